// cuda::CausalAttentionForward/Backward against cpu::CausalAttentionForward/Backward on the same
// inputs: out and lse, then dq, dk and dv, over multi-head and grouped-query shapes, head
// dimensions 1 to 128, T of 1, of several key tiles, and not a multiple of the tiles; packed qkv
// views; either forward's lse in the CUDA backward; bitwise repeatability; argument errors.
#include "runtime/cuda/attention.h"

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/attention.h"
#include "runtime/threading.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using testing::CudaKernelTest;
using testing::EmptyF32;
using testing::ExpectRelativeError;
using testing::ExpectStatus;
using testing::RandomTensor;

// Norm-wise relative error against the CPU kernel. Both sum in f32 in different orders (the CPU
// over a whole row of keys, or 16-wide vectors, this kernel with an online softmax over 32-key
// tiles and per-lane partial sums); the differences are a few ulps of the largest terms.
constexpr double kTolerance = 1e-5;

std::vector<float> CpuWorkspace(const Tensor& q) {
  return std::vector<float>(
      cpu::AttentionWorkspaceBytes(q.dim(0), q.dim(1), q.dim(2), q.dim(3), NumThreads()) /
      sizeof(float));
}

class AttentionCudaTest : public CudaKernelTest {
 protected:
  Tensor DeviceWorkspace(const Tensor& q) {
    const size_t bytes = AttentionWorkspaceBytes(q.dim(0), q.dim(1), q.dim(2), q.dim(3));
    return DeviceEmpty(Shape{static_cast<int64_t>(bytes / sizeof(float))});
  }
};

TEST_F(AttentionCudaTest, MatchesTheCpuKernel) {
  std::mt19937_64 rng(41);
  // (B, H, H_kv, T, D). The kernels take 8 query rows and 32 keys per tile, and head dimensions
  // up to 32, 64 or 128 zero-padded: T = 1, T below, at and across tiles; D = 1, 48 and 96 pad.
  for (auto [b, h, hkv, t, d] : {std::tuple{1, 1, 1, 1, 32},
                                 {1, 4, 2, 1, 128},
                                 {2, 4, 4, 37, 64},
                                 {1, 8, 2, 100, 128},
                                 {2, 3, 1, 33, 48},
                                 {1, 2, 2, 8, 1},
                                 {1, 2, 1, 300, 32},
                                 {1, 2, 2, 45, 96},
                                 {2, 6, 3, 64, 64}}) {
    SCOPED_TRACE(::testing::Message() << "B" << b << " H" << h << " Hkv" << hkv << " T" << t
                                      << " D" << d);
    const Shape qs{b, h, t, d}, ks{b, hkv, t, d}, ls{b, h, t};
    const Tensor q = RandomTensor(qs, rng), k = RandomTensor(ks, rng), v = RandomTensor(ks, rng);
    const Tensor dout = RandomTensor(qs, rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));

    std::vector<float> cws = CpuWorkspace(q);
    const Tensor out = EmptyF32(qs), lse = EmptyF32(ls);
    ASSERT_TRUE(cpu::CausalAttentionForward(q, k, v, out, lse, scale, absl::MakeSpan(cws)).ok());
    const Tensor dq = EmptyF32(qs), dk = EmptyF32(ks), dv = EmptyF32(ks);
    ASSERT_TRUE(cpu::CausalAttentionBackward(q, k, v, lse, dout, dq, dk, dv, scale,
                                             absl::MakeSpan(cws))
                    .ok());

    const Tensor gq = ToDevice(q), gk = ToDevice(k), gv = ToDevice(v), gdout = ToDevice(dout);
    const Tensor ws = DeviceWorkspace(q);
    const Tensor gout = DeviceEmpty(qs), glse = DeviceEmpty(ls);
    ASSERT_TRUE(CausalAttentionForward(stream(), gq, gk, gv, gout, glse, scale, ws).ok());
    ExpectRelativeError(ToHost(gout), out, kTolerance, "out");
    ExpectRelativeError(ToHost(glse), lse, kTolerance, "lse");

    const Tensor gdq = DeviceEmpty(qs), gdk = DeviceEmpty(ks), gdv = DeviceEmpty(ks);
    ASSERT_TRUE(
        CausalAttentionBackward(stream(), gq, gk, gv, glse, gdout, gdq, gdk, gdv, scale, ws).ok());
    const Tensor hdq = ToHost(gdq), hdk = ToHost(gdk), hdv = ToHost(gdv);
    ExpectRelativeError(hdq, dq, kTolerance, "dq");
    ExpectRelativeError(hdk, dk, kTolerance, "dk");
    ExpectRelativeError(hdv, dv, kTolerance, "dv");

    // The CPU forward's lse serves the CUDA backward as well (the saved state is the same).
    const Tensor cpu_lse = ToDevice(lse);
    const Tensor edq = DeviceEmpty(qs), edk = DeviceEmpty(ks), edv = DeviceEmpty(ks);
    ASSERT_TRUE(
        CausalAttentionBackward(stream(), gq, gk, gv, cpu_lse, gdout, edq, edk, edv, scale, ws)
            .ok());
    ExpectRelativeError(ToHost(edq), dq, kTolerance, "dq from the CPU's lse");
    ExpectRelativeError(ToHost(edk), dk, kTolerance, "dk from the CPU's lse");
    ExpectRelativeError(ToHost(edv), dv, kTolerance, "dv from the CPU's lse");

    // Deterministic: the same inputs give the same bits (no atomics).
    const Tensor rdq = DeviceEmpty(qs), rdk = DeviceEmpty(ks), rdv = DeviceEmpty(ks);
    ASSERT_TRUE(
        CausalAttentionBackward(stream(), gq, gk, gv, glse, gdout, rdq, rdk, rdv, scale, ws).ok());
    for (auto [again, first] :
         {std::pair{ToHost(rdq), hdq}, {ToHost(rdk), hdk}, {ToHost(rdv), hdv}}) {
      EXPECT_EQ(std::memcmp(again.raw_data(), first.raw_data(), first.nbytes()), 0)
          << "a second backward differs";
    }
  }
}

// Views (B, H, T, D) into a packed (B, T, 3, H, D) buffer, as the GPT block uses them.
Tensor PackedView(const Tensor& qkv, int64_t h, int which) {
  const int64_t b = qkv.dim(0), t = qkv.dim(1), d = qkv.dim(2) / 3 / h;
  const int order[] = {0, 2, 1, 3};
  return qkv.Reshape({b, t, 3, h, d}).value().Select(2, which).value().Permute(order).value();
}

TEST_F(AttentionCudaTest, StridedPackedQkvViews) {
  std::mt19937_64 rng(43);
  const int64_t b = 2, t = 50, h = 4, d = 64, c = h * d;
  const int order[] = {0, 2, 1, 3};
  const Tensor qkv = RandomTensor(Shape{b, t, 3 * c}, rng), dy = RandomTensor(Shape{b, t, c}, rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  auto heads = [&](const Tensor& btc) {
    return btc.Reshape({b, t, h, d}).value().Permute(order).value();
  };

  std::vector<float> cws = CpuWorkspace(PackedView(qkv, h, 0));
  const Tensor y = EmptyF32(Shape{b, t, c}), lse = EmptyF32(Shape{b, h, t});
  const Tensor dqkv = EmptyF32(qkv.shape());
  ASSERT_TRUE(cpu::CausalAttentionForward(PackedView(qkv, h, 0), PackedView(qkv, h, 1),
                                          PackedView(qkv, h, 2), heads(y), lse, scale,
                                          absl::MakeSpan(cws))
                  .ok());
  ASSERT_TRUE(cpu::CausalAttentionBackward(PackedView(qkv, h, 0), PackedView(qkv, h, 1),
                                           PackedView(qkv, h, 2), lse, heads(dy),
                                           PackedView(dqkv, h, 0), PackedView(dqkv, h, 1),
                                           PackedView(dqkv, h, 2), scale, absl::MakeSpan(cws))
                  .ok());

  const Tensor gqkv = ToDevice(qkv), gdy = ToDevice(dy);
  const Tensor gy = DeviceEmpty(y.shape()), glse = DeviceEmpty(lse.shape());
  const Tensor gdqkv = DeviceEmpty(qkv.shape());
  const Tensor gq = PackedView(gqkv, h, 0), gk = PackedView(gqkv, h, 1),
               gv = PackedView(gqkv, h, 2);
  ASSERT_FALSE(gq.is_contiguous());
  const Tensor ws = DeviceWorkspace(gq);
  ASSERT_TRUE(CausalAttentionForward(stream(), gq, gk, gv, heads(gy), glse, scale, ws).ok());
  ASSERT_TRUE(CausalAttentionBackward(stream(), gq, gk, gv, glse, heads(gdy),
                                      PackedView(gdqkv, h, 0), PackedView(gdqkv, h, 1),
                                      PackedView(gdqkv, h, 2), scale, ws)
                  .ok());
  ExpectRelativeError(ToHost(gy), y, kTolerance, "y");
  ExpectRelativeError(ToHost(glse), lse, kTolerance, "lse");
  ExpectRelativeError(ToHost(gdqkv), dqkv, kTolerance, "dqkv");
}

TEST_F(AttentionCudaTest, EmptySequenceLaunchesNothing) {
  const Shape qs{2, 4, 0, 64}, ks{2, 2, 0, 64}, ls{2, 4, 0};
  const Tensor q = DeviceZeros(qs), k = DeviceZeros(ks), v = DeviceZeros(ks);
  const Tensor lse = DeviceZeros(ls), ws = DeviceZeros(Shape{1});
  EXPECT_TRUE(CausalAttentionForward(stream(), q, k, v, DeviceZeros(qs), lse, 0.125f, ws).ok());
  EXPECT_TRUE(CausalAttentionBackward(stream(), q, k, v, lse, DeviceZeros(qs), DeviceZeros(qs),
                                      DeviceZeros(ks), DeviceZeros(ks), 0.125f, ws)
                  .ok());
}

// The launchers check their arguments before they touch the device, so these run anywhere: a
// device tensor here is a CUDA-tagged view of host bytes that no kernel ever reads.
class AttentionCudaChecks : public ::testing::Test {
 protected:
  testing::CudaTaggedViews on_cuda;
};

TEST_F(AttentionCudaChecks, ForwardRefusesBadArguments) {
  const Shape qs{2, 4, 8, 16}, ks{2, 2, 8, 16}, ls{2, 4, 8};
  const Tensor q = on_cuda(qs), k = on_cuda(ks), v = on_cuda(ks), out = on_cuda(qs),
               lse = on_cuda(ls);
  const Tensor ws = on_cuda(Shape{2 * 4 * 8});
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_TRUE(AttentionWorkspaceBytes(2, 4, 8, 16) == 2 * 4 * 8 * sizeof(float));

  const Tensor host_q = EmptyF32(qs);
  ExpectStatus(CausalAttentionForward(nullptr, host_q, k, v, out, lse, 0.25f, ws), kInvalid,
               {"CausalAttentionForward", "q", "not on a CUDA device"});
  ExpectStatus(
      CausalAttentionForward(nullptr, q, on_cuda(Shape{2, 3, 8, 16}), v, out, lse, 0.25f, ws),
      kInvalid, {"CausalAttentionForward", "k is", "H_kv"});
  ExpectStatus(
      CausalAttentionForward(nullptr, q, k, on_cuda(ks, DType::kBF16), out, lse, 0.25f, ws),
      kInvalid, {"CausalAttentionForward", "v", "f32"});
  ExpectStatus(CausalAttentionForward(nullptr, q, k, v, on_cuda(Shape{2, 4, 8, 8}), lse, 0.25f, ws),
               kInvalid, {"CausalAttentionForward", "out", "expected shape"});
  ExpectStatus(CausalAttentionForward(nullptr, q, k, v, out, on_cuda(Shape{2, 4, 7}), 0.25f, ws),
               kInvalid, {"CausalAttentionForward", "lse"});
  ExpectStatus(CausalAttentionForward(nullptr, q, k, v, out, lse, 0.0f, ws), kInvalid,
               {"CausalAttentionForward", "scale"});
  ExpectStatus(CausalAttentionForward(nullptr, q, k, v, out, lse, NAN, ws), kInvalid,
               {"CausalAttentionForward", "scale"});
  ExpectStatus(CausalAttentionForward(nullptr, q, k, v, out, lse, 0.25f, on_cuda(Shape{63})),
               kInvalid, {"CausalAttentionForward", "workspace of 252 bytes", "256 bytes"});
  ExpectStatus(CausalAttentionForward(nullptr, q, k, v, out, lse, 0.25f, EmptyF32(Shape{64})),
               kInvalid, {"CausalAttentionForward", "workspace", "not on a CUDA device"});
  // D not innermost: a (B, H, T, D) view whose last dimension has stride T.
  const int swap[] = {0, 1, 3, 2};
  const Tensor q_t = on_cuda(Shape{2, 4, 8, 8}).Permute(swap).value();
  ExpectStatus(
      CausalAttentionForward(nullptr, q_t, on_cuda(Shape{2, 2, 8, 8}), on_cuda(Shape{2, 2, 8, 8}),
                             on_cuda(Shape{2, 4, 8, 8}), lse, 0.25f, ws),
      kInvalid, {"CausalAttentionForward", "q", "stride 1"});
  // Head dimensions above 128 are refused by name.
  const Shape big_q{1, 2, 4, 256}, big_k{1, 1, 4, 256};
  ExpectStatus(CausalAttentionForward(nullptr, on_cuda(big_q), on_cuda(big_k), on_cuda(big_k),
                                      on_cuda(big_q), on_cuda(Shape{1, 2, 4}), 0.0625f, ws),
               kInvalid, {"CausalAttentionForward", "head dimension D = 256", "128"});
}

TEST_F(AttentionCudaChecks, BackwardRefusesBadArguments) {
  const Shape qs{2, 4, 8, 16}, ks{2, 2, 8, 16}, ls{2, 4, 8};
  const Tensor q = on_cuda(qs), k = on_cuda(ks), v = on_cuda(ks), lse = on_cuda(ls);
  const Tensor dout = on_cuda(qs), dq = on_cuda(qs), dk = on_cuda(ks), dv = on_cuda(ks);
  const Tensor ws = on_cuda(Shape{2 * 4 * 8});
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  constexpr char kOp[] = "CausalAttentionBackward";
  ExpectStatus(CausalAttentionBackward(nullptr, q, k, v, EmptyF32(ls), dout, dq, dk, dv, 0.25f, ws),
               kInvalid, {kOp, "lse", "not on a CUDA device"});
  ExpectStatus(CausalAttentionBackward(nullptr, q, k, v, lse, on_cuda(ks), dq, dk, dv, 0.25f, ws),
               kInvalid, {kOp, "dout", "expected shape"});
  ExpectStatus(
      CausalAttentionBackward(nullptr, q, k, v, lse, dout, EmptyF32(qs), dk, dv, 0.25f, ws),
               kInvalid, {kOp, "dq", "not on a CUDA device"});
  ExpectStatus(CausalAttentionBackward(nullptr, q, k, v, lse, dout, dq, on_cuda(qs), dv, 0.25f, ws),
               kInvalid, {kOp, "dk", "expected shape"});
  ExpectStatus(CausalAttentionBackward(nullptr, q, k, v, lse, dout, dq, dk,
                                       on_cuda(ks, DType::kBF16), 0.25f, ws),
               kInvalid, {kOp, "dv", "f32"});
  ExpectStatus(
      CausalAttentionBackward(nullptr, q, k, v, lse, dout, dq, dk, dv, 0.25f, on_cuda(Shape{10})),
      kInvalid, {kOp, "workspace", "AttentionWorkspaceBytes"});
}

}  // namespace
}  // namespace strata::cuda
