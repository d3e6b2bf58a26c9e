// The custom-model example's network (examples/custom_model/spiral_net.h) in the plan-checking
// run: each arena value in its own block, live only over its planned interval, gives bitwise
// the losses of the planned arena.
#include "examples/custom_model/spiral_net.h"

#include <vector>

#include "gtest/gtest.h"
#include "runtime/allocator.h"

namespace strata::examples {
namespace {

TEST(SpiralNetTest, CheckedRunGivesBitwiseTheLossesOfThePlannedArena) {
  constexpr int64_t kBatch = 96, kSteps = 4;
  std::vector<std::unique_ptr<graph::Program>> programs;
  std::vector<std::unique_ptr<SpiralNet>> nets;
  for (const bool check : {false, true}) {
    nets.push_back(std::make_unique<SpiralNet>(/*width=*/32, /*blocks=*/3));
    nets.back()->embed()->SetTrainable(false);
    graph::TrainOptions o = SpiralTrainOptions(/*steps=*/300);  // the first kSteps of it
    o.check_plan = check;
    absl::StatusOr<std::unique_ptr<graph::Program>> p = CompileSpiralNet(*nets.back(), kBatch, o);
    ASSERT_TRUE(p.ok()) << p.status();
    programs.push_back(std::move(*p));
  }
  Tensor points = Tensor::Empty(Shape{kBatch, 2}, DType::kF32, DefaultCpuAllocator()).value();
  Tensor labels = Tensor::Empty(Shape{kBatch}, DType::kI32, DefaultCpuAllocator()).value();
  for (int64_t s = 0; s < kSteps; ++s) {
    Spirals(kBatch / 3, static_cast<uint64_t>(s), points.data<float>(), labels.data<int32_t>());
    absl::StatusOr<graph::StepStats> a = programs[0]->Step({points, labels});
    absl::StatusOr<graph::StepStats> c = programs[1]->Step({points, labels});
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(a->loss, c->loss) << "step " << s;
    const graph::MemoryPlan& plan = programs[1]->plan();
    EXPECT_EQ(c->peak_bytes[static_cast<int>(MemoryTier::kDevice)],
              plan.persistent_bytes + plan.live_peak_bytes);
  }
  Spirals(kBatch / 3, /*seed=*/99, points.data<float>(), labels.data<int32_t>());
  absl::StatusOr<double> a = programs[0]->Evaluate({points, labels});
  absl::StatusOr<double> c = programs[1]->Evaluate({points, labels});
  ASSERT_TRUE(a.ok() && c.ok()) << a.status() << c.status();
  EXPECT_EQ(*a, *c);
}

}  // namespace
}  // namespace strata::examples
