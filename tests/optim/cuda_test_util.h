// What the optimizer's CUDA tests share: device buffers of floats and random vectors.
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace strata::optim::testing {

// n floats on the device, copied from and to the host.
struct DeviceFloats {
  explicit DeviceFloats(const std::vector<float>& host) : n(host.size()) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&data), n * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data, host.data(), n * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceFloats() { cudaFree(data); }
  std::vector<float> Read() const {
    std::vector<float> host(n);
    EXPECT_EQ(cudaMemcpy(host.data(), data, n * sizeof(float), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }
  float* data = nullptr;
  size_t n;
};

inline std::vector<float> Random(size_t n, float scale, uint32_t seed, bool positive = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0, scale);
  std::vector<float> x(n);
  for (float& e : x) e = positive ? std::abs(d(rng)) : d(rng);
  return x;
}

}  // namespace strata::optim::testing
