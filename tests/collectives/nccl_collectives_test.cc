// The NCCL backend on CUDA devices: every collective on device buffers against sums computed on
// the host in double precision (f32) or 64-bit integers (i32). Alone (ctest runs each test, a
// world of one bootstrapped by the single-process communicator) and under mpiexec -n 2 (one GPU
// per rank, bootstrapped over MPI). Without a CUDA device every test skips, saying so; the job
// under mpiexec exits 77 (ctest: skipped) when there are fewer devices than ranks.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "collectives/create_communicator.h"
#include "collectives/nccl_communicator.h"
#include "gtest/gtest.h"

namespace strata::collectives {
namespace {

int DeviceCount() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

// One communicator for the whole binary (NCCL init is collective and slow).
Communicator* Comm() {
  static std::unique_ptr<Communicator> comm = [] {
    std::unique_ptr<Communicator> bootstrap = *CreateCommunicator(CommOptions{});
    const int device = bootstrap->rank() % DeviceCount();
    absl::StatusOr<std::unique_ptr<NcclCommunicator>> nccl = NcclCommunicator::Create(
        CommOptions{.timeout_seconds = 60, .device = Device::Cuda(device)}, std::move(bootstrap));
    if (!nccl.ok()) {
      std::fprintf(stderr, "%s\n", std::string(nccl.status().message()).c_str());
      std::abort();
    }
    return std::unique_ptr<Communicator>(std::move(*nccl));
  }();
  return comm.get();
}

// A device copy of a host vector, freed with the object.
template <typename T>
class DeviceVector {
 public:
  explicit DeviceVector(const std::vector<T>& host) : size_(host.size()) {
    EXPECT_EQ(cudaMalloc(&data_, std::max<size_t>(1, size_) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceVector() { cudaFree(data_); }
  std::vector<T> Host() const {
    std::vector<T> host(size_);
    EXPECT_EQ(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }
  Tensor tensor() const {
    return Tensor::Wrap(data_, Shape{static_cast<int64_t>(size_)},
                        std::is_same_v<T, float> ? DType::kF32 : DType::kI32,
                        Comm()->device());
  }

 private:
  void* data_ = nullptr;
  size_t size_;
};

float F(int q, int64_t i) { return 0.37f * (q + 1) + 0.013f * static_cast<float>(i % 101) - 0.5f; }
double SumF(int64_t i) {
  double s = 0;
  for (int q = 0; q < Comm()->world_size(); ++q) s += F(q, i);
  return s;
}

class NcclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (DeviceCount() == 0) GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount found none)";
  }
};

TEST_F(NcclTest, AllReduceAndBroadcastOfDeviceBuffers) {
  Communicator* comm = Comm();
  const int r = comm->rank();
  for (int64_t count : {0, 1, 7, 1023, (1 << 20) + 3}) {
    std::vector<float> host(count);
    for (int64_t i = 0; i < count; ++i) host[i] = F(r, i);
    DeviceVector<float> d(host);
    ASSERT_TRUE(comm->Wait(*comm->AllReduce(d.tensor())).ok());
    const std::vector<float> got = d.Host();
    for (int64_t i = 0; i < count; ++i) ASSERT_NEAR(got[i], SumF(i), 1e-5) << i;
    DeviceVector<float> b(host);
    ASSERT_TRUE(comm->Wait(*comm->Broadcast(b.tensor(), comm->world_size() - 1)).ok());
    const std::vector<float> root = b.Host();
    for (int64_t i = 0; i < count; ++i) ASSERT_EQ(root[i], F(comm->world_size() - 1, i));
  }
  ASSERT_TRUE(comm->Wait(*comm->Barrier()).ok());
}

TEST_F(NcclTest, ReduceScatterAndAllGatherEvenAndUneven) {
  Communicator* comm = Comm();
  const int n = comm->world_size(), r = comm->rank();
  for (int64_t count : {2 * n, 2 * n + 1, 1023}) {
    std::vector<float> host(count);
    for (int64_t i = 0; i < count; ++i) host[i] = F(r, i);
    const ShardRange mine = ShardOf(count, n, r);
    DeviceVector<float> in(host), out(std::vector<float>(mine.count, -7.f));
    ASSERT_TRUE(comm->Wait(*comm->ReduceScatter(in.tensor(), out.tensor())).ok());
    const std::vector<float> shard = out.Host();
    for (int64_t k = 0; k < mine.count; ++k) ASSERT_NEAR(shard[k], SumF(mine.offset + k), 1e-5);
    DeviceVector<float> whole(std::vector<float>(count, -7.f));
    ASSERT_TRUE(comm->Wait(*comm->AllGather(out.tensor(), whole.tensor())).ok());
    const std::vector<float> gathered = whole.Host();
    for (int64_t i = 0; i < count; ++i) ASSERT_NEAR(gathered[i], SumF(i), 1e-5) << i;
  }
}

TEST_F(NcclTest, BucketedAllReduceAndI32) {
  Communicator* comm = Comm();
  const int r = comm->rank(), n = comm->world_size();
  DeviceVector<float> a(std::vector<float>(5, F(r, 0))), b(std::vector<float>(0)),
      c(std::vector<float>(3, F(r, 1)));
  std::vector<Tensor> tensors = {a.tensor(), b.tensor(), c.tensor()};
  ASSERT_TRUE(comm->Wait(*comm->AllReduceBucketed(tensors)).ok());
  for (float x : a.Host()) EXPECT_NEAR(x, SumF(0), 1e-5);
  for (float x : c.Host()) EXPECT_NEAR(x, SumF(1), 1e-5);
  DeviceVector<int32_t> ints(std::vector<int32_t>(9, r + 1));
  ASSERT_TRUE(comm->Wait(*comm->AllReduce(ints.tensor())).ok());
  for (int32_t x : ints.Host()) EXPECT_EQ(x, n * (n + 1) / 2);
}

}  // namespace
}  // namespace strata::collectives

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (strata::collectives::LaunchedUnderMpi()) {
    // The job needs one device per rank; every rank decides alike, before any collective.
    const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
    const int ranks = size != nullptr ? std::atoi(size) : 1;
    if (strata::collectives::DeviceCount() < ranks) {
      std::printf("skipped: %d CUDA devices for %d ranks\n", strata::collectives::DeviceCount(),
                  ranks);
      return 77;
    }
  }
  return RUN_ALL_TESTS();
}
