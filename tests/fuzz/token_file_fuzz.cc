// Fuzz target: token files (llm.c header, headerless uint16) and raw text, on arbitrary bytes.
#include <cstring>
#include <string>
#include <vector>

#include "graph/data/token_file.h"
#include "tests/fuzz/fuzz_target.h"

namespace strata::fuzz {

std::vector<std::string> FuzzSeeds() {
  // llm.c: magic, version 1, 5 tokens, 253 reserved ints, then the tokens.
  std::string llmc(1024, '\0');
  const int32_t header[3] = {data::kLlmcMagic, 1, 5};
  std::memcpy(llmc.data(), header, sizeof(header));
  const uint16_t tokens[5] = {0, 1, 50256, 7, 65535};
  llmc.append(reinterpret_cast<const char*>(tokens), sizeof(tokens));
  return {llmc, std::string(reinterpret_cast<const char*>(tokens), sizeof(tokens)),
          "the quick brown fox\n"};
}

}  // namespace strata::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  for (const char* name : {"input.bin", "input.txt"}) {
    const std::string path = fuzz::WriteInput(name, data, size);
    absl::StatusOr<data::TokenFile> f = data::ReadTokens(path);
    if (f.ok() && (f->min_vocab < 0 || f->min_vocab > 65536 || f->hash != data::TokenHash(f->tokens))) {
      std::abort();  // the fields must describe the tokens
    }
  }
  return 0;
}
