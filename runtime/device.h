// Where memory lives and where work runs: a small value type (kind, index).
//
//   Device cpu = Device::Cpu();
//   Device gpu = Device::Cuda(0);                 // reserved for the CUDA backend
//   cpu.ToString() == "cpu"; gpu.ToString() == "cuda:0"
//   absl::StatusOr<Device> d = ParseDevice("cuda:1");
//
// Device says which processor can address a pointer; MemoryTier (memory_tier.h) says which budget
// the bytes are charged to. On a CPU-only build the device tier is ordinary RAM.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"
#include "absl/status/statusor.h"

namespace strata {

enum class DeviceKind : uint8_t { kCpu, kCuda };

class Device {
 public:
  constexpr Device() = default;  // cpu
  static constexpr Device Cpu() { return Device(DeviceKind::kCpu, 0); }
  static constexpr Device Cuda(int index) { return Device(DeviceKind::kCuda, index); }

  constexpr DeviceKind kind() const { return kind_; }
  constexpr int index() const { return index_; }
  constexpr bool is_cpu() const { return kind_ == DeviceKind::kCpu; }
  constexpr bool is_cuda() const { return kind_ == DeviceKind::kCuda; }
  // True when host code may dereference pointers on this device.
  constexpr bool host_addressable() const { return kind_ == DeviceKind::kCpu; }
  std::string ToString() const;

  friend constexpr bool operator==(Device a, Device b) {
    return a.kind_ == b.kind_ && a.index_ == b.index_;
  }
  friend constexpr bool operator!=(Device a, Device b) { return !(a == b); }

 private:
  constexpr Device(DeviceKind kind, int index) : kind_(kind), index_(index) {}
  DeviceKind kind_ = DeviceKind::kCpu;
  int index_ = 0;
};

absl::StatusOr<Device> ParseDevice(absl::string_view text);  // "cpu", "cuda", "cuda:N"

}  // namespace strata
