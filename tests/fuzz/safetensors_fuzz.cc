// Fuzz target: SafetensorsFile::Read on arbitrary bytes (Note [fuzz allocation bound]).
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/safetensors.h"
#include "tests/fuzz/fuzz_target.h"

namespace strata::fuzz {

std::vector<std::string> FuzzSeeds() {
  Tensor w = Tensor::Empty(Shape{2, 3}, DType::kF32, DefaultCpuAllocator()).value();
  for (int i = 0; i < 6; ++i) w.data<float>()[i] = 0.5f * static_cast<float>(i);
  Tensor ids = Tensor::Empty(Shape{2}, DType::kI64, DefaultCpuAllocator()).value();
  ids.data<int64_t>()[0] = -1;
  ids.data<int64_t>()[1] = int64_t{1} << 40;
  const std::string path = (std::filesystem::path(TempDir()) / "seed.safetensors").string();
  if (!WriteSafetensors(path, {{"w", w}, {"ids", ids}}, {{"format", "pt"}}).ok()) std::abort();
  return {ReadWholeFile(path)};
}

}  // namespace strata::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  const std::string path = fuzz::WriteInput("input.safetensors", data, size);
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Read(path, fuzz::BoundedAllocator());
  if (f.ok()) {
    // What a loader does next: every tensor by name, and a typed Get.
    for (const std::string& name : f->names()) {
      const Tensor t = f->Get(name).value();
      (void)f->Get(name, DType::kF32, t.shape());
    }
  }
  return 0;
}
