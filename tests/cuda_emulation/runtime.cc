// The CUDA runtime API of include/cuda_runtime_api.h on the CPU: one device whose memory is host
// memory; streams are handles whose work (copies, memsets, kernels, host functions) runs at once,
// in order, on the calling thread, so that synchronizing is a no-op.
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "cuda_runtime_api.h"
#include "tests/cuda_emulation/device.h"

namespace cuda_emulation {
namespace {

constexpr size_t kDeviceBytes = size_t{80} << 30;  // what cudaMemGetInfo says the device has
constexpr size_t kAlignment = 256;                 // as cudaMalloc's

thread_local cudaError_t last_error = cudaSuccess;

struct Device {
  std::mutex mu;
  std::unordered_map<void*, size_t> device_blocks;  // cudaMalloc's, and their sizes
  std::unordered_set<void*> host_blocks;            // cudaHostAlloc's
  std::unordered_set<cudaStream_t> streams;
  std::unordered_set<cudaEvent_t> events;
  std::unordered_set<void*> registered;  // cudaHostRegister's
  size_t allocated = 0;
};

Device& TheDevice() {
  static Device* d = new Device;
  return *d;
}

cudaError_t Record(cudaError_t e) {
  if (e != cudaSuccess) last_error = e;
  return e;
}

void* AllocateAligned(size_t bytes) {
  return std::aligned_alloc(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
}

}  // namespace

void SetLastError(cudaError_t error) { Record(error); }

bool KnownStream(cudaStream_t s) {
  if (s == nullptr) return true;  // the default stream
  Device& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  return d.streams.count(s) != 0;
}

}  // namespace cuda_emulation

using cuda_emulation::KnownStream;
using cuda_emulation::Record;
using cuda_emulation::TheDevice;

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return Record(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : Record(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return Record(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

cudaError_t cudaGetLastError() {
  const cudaError_t e = cuda_emulation::last_error;
  cuda_emulation::last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return cuda_emulation::last_error; }

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorHostMemoryAlreadyRegistered:
      return "cudaErrorHostMemoryAlreadyRegistered";
    case cudaErrorHostMemoryNotRegistered:
      return "cudaErrorHostMemoryNotRegistered";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorHostMemoryAlreadyRegistered:
      return "part or all of the requested memory range is already mapped";
    case cudaErrorHostMemoryNotRegistered:
      return "pointer does not correspond to a registered memory region";
  }
  return "unknown error";
}

// New device memory is filled with 0xFF bytes (f32 NaN), so that a kernel that reads what nobody
// wrote shows in its results.
cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (ptr == nullptr) return Record(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  auto& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  void* p = bytes <= cuda_emulation::kDeviceBytes - d.allocated
                ? cuda_emulation::AllocateAligned(bytes)
                : nullptr;
  if (p == nullptr) return Record(cudaErrorMemoryAllocation);
  std::memset(p, 0xFF, bytes);
  d.device_blocks[p] = bytes;
  d.allocated += bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  auto& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  auto it = d.device_blocks.find(ptr);
  if (it == d.device_blocks.end()) return Record(cudaErrorInvalidValue);
  d.allocated -= it->second;
  d.device_blocks.erase(it);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int flags) {
  if (ptr == nullptr) return Record(cudaErrorInvalidValue);
  void* p = cuda_emulation::AllocateAligned(bytes == 0 ? 1 : bytes);
  if (p == nullptr) return Record(cudaErrorMemoryAllocation);
  auto& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  d.host_blocks.insert(p);
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  auto& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  if (d.host_blocks.erase(ptr) == 0) return Record(cudaErrorInvalidValue);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaHostRegister(void* ptr, size_t bytes, unsigned int flags) {
  if (ptr == nullptr || bytes == 0) return Record(cudaErrorInvalidValue);
  auto& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  if (!d.registered.insert(ptr).second) return Record(cudaErrorHostMemoryAlreadyRegistered);
  return cudaSuccess;
}

cudaError_t cudaHostUnregister(void* ptr) {
  auto& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  if (d.registered.erase(ptr) == 0) return Record(cudaErrorHostMemoryNotRegistered);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  if (free == nullptr || total == nullptr) return Record(cudaErrorInvalidValue);
  auto& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  *total = cuda_emulation::kDeviceBytes;
  *free = cuda_emulation::kDeviceBytes - d.allocated;
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr || kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) {
    return Record(cudaErrorInvalidValue);
  }
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (!KnownStream(stream)) return Record(cudaErrorInvalidResourceHandle);
  return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (ptr == nullptr) return Record(cudaErrorInvalidValue);
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  if (!KnownStream(stream)) return Record(cudaErrorInvalidResourceHandle);
  return cudaMemset(ptr, value, bytes);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (stream == nullptr) return Record(cudaErrorInvalidValue);
  // A handle nobody dereferences: one byte of its own, so that handles differ.
  auto s = reinterpret_cast<cudaStream_t>(new char);
  auto& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  d.streams.insert(s);
  *stream = s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  return KnownStream(stream) ? cudaSuccess : Record(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  auto& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  if (stream == nullptr || d.streams.erase(stream) == 0) {
    return Record(cudaErrorInvalidResourceHandle);
  }
  delete reinterpret_cast<char*>(stream);
  return cudaSuccess;
}

// Every stream's work is done when it is enqueued, so an event is reached when it is recorded.
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (event == nullptr) return Record(cudaErrorInvalidValue);
  auto e = reinterpret_cast<cudaEvent_t>(new char);
  auto& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  d.events.insert(e);
  *event = e;
  return cudaSuccess;
}

namespace {
bool KnownEvent(cudaEvent_t e) {
  auto& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  return d.events.count(e) != 0;
}
}  // namespace

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!KnownEvent(event) || !KnownStream(stream)) return Record(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  if (!KnownEvent(event) || !KnownStream(stream)) return Record(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  auto& d = TheDevice();
  std::lock_guard<std::mutex> lock(d.mu);
  if (event == nullptr || d.events.erase(event) == 0) return Record(cudaErrorInvalidResourceHandle);
  delete reinterpret_cast<char*>(event);
  return cudaSuccess;
}

cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  if (fn == nullptr) return Record(cudaErrorInvalidValue);
  if (!KnownStream(stream)) return Record(cudaErrorInvalidResourceHandle);
  fn(user_data);  // the stream's earlier work is done
  return cudaSuccess;
}
