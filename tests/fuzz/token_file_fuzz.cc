// Fuzz target: token files (llm.c headers of uint16 and uint32 tokens, headerless uint16) and
// raw text, on arbitrary bytes.
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
  // llm.c's llama-3 files: magic 20240801, version 7, uint32 tokens.
  std::string wide(1024, '\0');
  const int32_t wide_header[3] = {data::kLlmcUint32Magic, data::kLlmcUint32Version, 3};
  std::memcpy(wide.data(), wide_header, sizeof(wide_header));
  const uint32_t wide_tokens[3] = {0, 128000, 70000};
  wide.append(reinterpret_cast<const char*>(wide_tokens), sizeof(wide_tokens));
  return {llmc, wide, std::string(reinterpret_cast<const char*>(tokens), sizeof(tokens)),
          "the quick brown fox\n"};
}

}  // namespace strata::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  for (const char* name : {"input.bin", "input.txt"}) {
    const std::string path = fuzz::WriteInput(name, data, size);
    absl::StatusOr<data::TokenFile> f = data::ReadTokens(path);
    const int64_t most = f.ok() && f->format == "llm.c uint32" ? (int64_t{1} << 32) : 65536;
    if (f.ok() && (f->min_vocab < 0 || f->min_vocab > most || f->hash != data::TokenHash(f->tokens))) {
      std::abort();  // the fields must describe the tokens
    }
  }
  return 0;
}
