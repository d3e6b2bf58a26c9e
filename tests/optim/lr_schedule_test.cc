#include "optim/lr_schedule.h"

#include <cmath>
#include <numbers>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::optim {
namespace {

TEST(LrScheduleTest, WarmupThenCosineFollowsTheClosedForm) {
  const LrSchedule s{.kind = LrSchedule::kCosine, .max_lr = 6e-4, .min_lr = 6e-5,
                     .warmup_steps = 10, .total_steps = 110};
  ASSERT_TRUE(s.Validate().ok());
  EXPECT_DOUBLE_EQ(s.At(0), 6e-4 / 10);
  EXPECT_DOUBLE_EQ(s.At(4), 6e-4 * 5 / 10);
  EXPECT_DOUBLE_EQ(s.At(10), 6e-4);             // cosine starts at the peak
  EXPECT_NEAR(s.At(60), (6e-4 + 6e-5) / 2, 1e-15);  // half way: the mean of max and min
  EXPECT_NEAR(s.At(35), 6e-5 + 0.5 * (1 + std::cos(std::numbers::pi * 0.25)) * (6e-4 - 6e-5), 1e-15);
  EXPECT_DOUBLE_EQ(s.At(110), 6e-5);
  EXPECT_DOUBLE_EQ(s.At(1000), 6e-5);
  for (int64_t t = 11; t < 110; ++t) EXPECT_LT(s.At(t), s.At(t - 1)) << t;
}

TEST(LrScheduleTest, ConstantAfterWarmup) {
  const LrSchedule s{.kind = LrSchedule::kConstant, .max_lr = 0.1, .warmup_steps = 4};
  EXPECT_DOUBLE_EQ(s.At(0), 0.025);
  EXPECT_DOUBLE_EQ(s.At(3), 0.1);
  EXPECT_DOUBLE_EQ(s.At(1000000), 0.1);
  const LrSchedule none{.max_lr = 0.1};
  EXPECT_DOUBLE_EQ(none.At(0), 0.1);
}

TEST(LrScheduleTest, RejectsInconsistentSettings) {
  testing::ExpectStatus(
      LrSchedule{.kind = LrSchedule::kCosine, .max_lr = 1, .warmup_steps = 10, .total_steps = 10}
          .Validate(),
      absl::StatusCode::kInvalidArgument, {"total_steps 10", "warmup_steps 10"});
  testing::ExpectStatus(
      LrSchedule{.kind = LrSchedule::kCosine, .max_lr = 1, .min_lr = 2, .total_steps = 10}
          .Validate(),
      absl::StatusCode::kInvalidArgument, {"min_lr 2"});
  testing::ExpectStatus(LrSchedule{.warmup_steps = -1}.Validate(),
                        absl::StatusCode::kInvalidArgument, {"warmup_steps -1"});
  testing::ExpectStatus(ParseLrScheduleKind("linear").status(),
                        absl::StatusCode::kInvalidArgument, {"'linear'"});
  EXPECT_EQ(ParseLrScheduleKind("cosine").value(), LrSchedule::kCosine);
}

}  // namespace
}  // namespace strata::optim
