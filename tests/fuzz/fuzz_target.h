// The interface of a fuzz target, tests/fuzz/<loader>_fuzz.cc, and what targets share. A target
// defines LLVMFuzzerTestOneInput (libFuzzer's entry point: run one input, return 0) and
// FuzzSeeds (small valid inputs the corpus starts from). It is linked either with libFuzzer
// (launch/fuzz, clang) or with fuzz_driver.cc, which replays a corpus and runs seeded random
// mutations (CI, any compiler).
//
//   extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
//     const std::string path = strata::fuzz::WriteInput("model.safetensors", data, size);
//     (void)SafetensorsFile::Read(path, strata::fuzz::BoundedAllocator());  // errors are fine
//     return 0;                                                             // crashes are not
//   }
//
// Note [fuzz allocation bound]: no input may make a loader allocate more than
// kMaxAllocationBytes at once; inputs are at most a few MiB, so a larger request means a size
// was taken from the input without a check. The bound is enforced by BoundedAllocator (tensor
// memory), by fuzz_driver.cc's operator new (g++ builds), by AddressSanitizer's
// max_allocation_size_mb (sanitizer builds) and by libFuzzer's -malloc_limit_mb.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/allocator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace strata::fuzz {

inline constexpr size_t kMaxAllocationBytes = size_t{256} << 20;

// Small valid inputs of this target; defined by each target.
std::vector<std::string> FuzzSeeds();

// Writes the input to `name` in a directory private to this process (removed at exit) and
// returns its path.
std::string WriteInput(const std::string& name, const void* data, size_t size);
std::string WriteInput(const std::string& name, const std::string& bytes);
// This process's private directory.
const std::string& TempDir();
std::string ReadWholeFile(const std::string& path);

// Host memory that aborts with a message on a request over kMaxAllocationBytes.
Allocator& BoundedAllocator();

// The input split at each kSplit into at most `parts` pieces (checkpoint directories are one
// input holding several files).
inline constexpr char kSplit[] = "\n=====\n";
std::vector<std::string> Split(const std::string& input, size_t parts);

}  // namespace strata::fuzz
