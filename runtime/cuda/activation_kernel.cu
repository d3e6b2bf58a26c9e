// Activations on the device, with runtime/cpu/activation.cc's scalar formulas in the same order:
// ReLU and ReLU6 (and their gradients) are the CPU's bit for bit; the others go through expf,
// tanhf, log1pf or erfcf, which may differ from glibc's (and from the CPU's vectorised exp) in
// the last bits.
#include <cuda_runtime.h>

#include "runtime/cuda/activation_kernel.h"
#include "runtime/cuda/elementwise_map.cuh"

namespace strata::cuda::internal {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;
constexpr float kMaxExpArg = 88.0f;  // exp stays finite
constexpr float kSoftplusThreshold = 20.0f;
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;

// x sigmoid(2u), see the CPU's Note [GELU as a sigmoid].
__device__ __forceinline__ float GeluScalar(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  return x / (1.0f + expf(fminf(-2.0f * u, kMaxExpArg)));
}

__device__ __forceinline__ float GeluGradScalar(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  const float e = expf(fminf(-2.0f * u, kMaxExpArg));
  const float s = 1.0f / (1.0f + e);
  return s + x * s * (e * s) * 2.0f * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
}

// sigmoid(x) without overflow: exp of a non-positive argument only.
__device__ __forceinline__ float SigmoidScalar(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);
  return e / (1.0f + e);
}

struct GeluForward {
  __device__ float operator()(float x) const { return GeluScalar(x); }
};
struct GeluBackward {
  __device__ float operator()(float x, float d) const { return GeluGradScalar(x) * d; }
};
struct ReluForward {
  __device__ float operator()(float x) const { return x > 0.0f ? x : 0.0f; }
};
struct ReluBackward {
  __device__ float operator()(float x, float d) const { return x > 0.0f ? d : 0.0f; }
};
struct Relu6Forward {
  __device__ float operator()(float x) const { return x > 0.0f ? (x < 6.0f ? x : 6.0f) : 0.0f; }
};
struct Relu6Backward {
  __device__ float operator()(float x, float d) const {
    return x > 0.0f && x < 6.0f ? d : 0.0f;
  }
};
struct SigmoidForward {
  __device__ float operator()(float x) const { return SigmoidScalar(x); }
};
struct SigmoidBackward {
  __device__ float operator()(float x, float d) const {
    const float s = SigmoidScalar(x);
    return d * s * (1.0f - s);
  }
};
struct TanhForward {
  __device__ float operator()(float x) const { return tanhf(x); }
};
struct TanhBackward {
  __device__ float operator()(float x, float d) const {
    const float t = tanhf(x);
    return d * (1.0f - t * t);
  }
};
struct SiluForward {
  __device__ float operator()(float x) const { return x * SigmoidScalar(x); }
};
// d/dx x s(x) = s (1 + x (1 - s)).
struct SiluBackward {
  __device__ float operator()(float x, float d) const {
    const float s = SigmoidScalar(x);
    return d * s * (1.0f + x * (1.0f - s));
  }
};
struct SwiGluForward {
  __device__ float operator()(float g, float u) const { return g * SigmoidScalar(g) * u; }
};
struct SwiGluGateGrad {
  __device__ float operator()(float g, float u, float d) const {
    const float s = SigmoidScalar(g);
    return d * u * s * (1.0f + g * (1.0f - s));
  }
};
struct SwiGluUpGrad {
  __device__ float operator()(float g, float d) const { return d * g * SigmoidScalar(g); }
};
// log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), and x itself above the threshold.
struct SoftplusForward {
  __device__ float operator()(float x) const {
    return x > kSoftplusThreshold ? x : fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
  }
};
struct SoftplusBackward {
  __device__ float operator()(float x, float d) const {
    return x > kSoftplusThreshold ? d : d * SigmoidScalar(x);
  }
};
// 0.5 x erfc(-x / sqrt(2)): 0.5 x (1 + erf(x / sqrt(2))) without its cancellation for x < 0.
struct GeluExactForward {
  __device__ float operator()(float x) const { return 0.5f * x * erfcf(-x * kInvSqrt2); }
};
// d/dx x Phi(x) = Phi(x) + x phi(x).
struct GeluExactBackward {
  __device__ float operator()(float x, float d) const {
    const float cdf = 0.5f * erfcf(-x * kInvSqrt2);
    return d * (cdf + x * kInvSqrt2Pi * expf(-0.5f * x * x));
  }
};

}  // namespace

int LaunchActivation(ActivationOp op, ElemType type, const StridedView* in, StridedView out,
                     int64_t n, CUstream_st* stream) {
  switch (op) {
    case ActivationOp::kGeluForward: return LaunchMap<1>(type, in, out, n, GeluForward{}, stream);
    case ActivationOp::kGeluBackward: return LaunchMap<2>(type, in, out, n, GeluBackward{}, stream);
    case ActivationOp::kReluForward: return LaunchMap<1>(type, in, out, n, ReluForward{}, stream);
    case ActivationOp::kReluBackward: return LaunchMap<2>(type, in, out, n, ReluBackward{}, stream);
    case ActivationOp::kRelu6Forward: return LaunchMap<1>(type, in, out, n, Relu6Forward{}, stream);
    case ActivationOp::kRelu6Backward:
      return LaunchMap<2>(type, in, out, n, Relu6Backward{}, stream);
    case ActivationOp::kSigmoidForward:
      return LaunchMap<1>(type, in, out, n, SigmoidForward{}, stream);
    case ActivationOp::kSigmoidBackward:
      return LaunchMap<2>(type, in, out, n, SigmoidBackward{}, stream);
    case ActivationOp::kTanhForward: return LaunchMap<1>(type, in, out, n, TanhForward{}, stream);
    case ActivationOp::kTanhBackward: return LaunchMap<2>(type, in, out, n, TanhBackward{}, stream);
    case ActivationOp::kSiluForward: return LaunchMap<1>(type, in, out, n, SiluForward{}, stream);
    case ActivationOp::kSiluBackward: return LaunchMap<2>(type, in, out, n, SiluBackward{}, stream);
    case ActivationOp::kSwiGluForward:
      return LaunchMap<2>(type, in, out, n, SwiGluForward{}, stream);
    case ActivationOp::kSwiGluGateGrad:
      return LaunchMap<3>(type, in, out, n, SwiGluGateGrad{}, stream);
    case ActivationOp::kSwiGluUpGrad: return LaunchMap<2>(type, in, out, n, SwiGluUpGrad{}, stream);
    case ActivationOp::kSoftplusForward:
      return LaunchMap<1>(type, in, out, n, SoftplusForward{}, stream);
    case ActivationOp::kSoftplusBackward:
      return LaunchMap<2>(type, in, out, n, SoftplusBackward{}, stream);
    case ActivationOp::kGeluExactForward:
      return LaunchMap<1>(type, in, out, n, GeluExactForward{}, stream);
    case ActivationOp::kGeluExactBackward:
      return LaunchMap<2>(type, in, out, n, GeluExactBackward{}, stream);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace strata::cuda::internal
