#include "optim/loss_scale.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::optim {
namespace {

TEST(LossScalerTest, DefaultsAreGradScalers) {
  const LossScaleOptions o;
  EXPECT_EQ(o.init_scale, 65536.0);
  EXPECT_EQ(o.growth_factor, 2.0);
  EXPECT_EQ(o.backoff_factor, 0.5);
  EXPECT_EQ(o.growth_interval, 2000);
  LossScaler s(o);
  EXPECT_EQ(s.scale(), 65536.0f);
  for (int i = 0; i < 1999; ++i) s.Update(false);
  EXPECT_EQ(s.scale(), 65536.0f);
  EXPECT_EQ(s.good_steps(), 1999);
  s.Update(false);
  EXPECT_EQ(s.scale(), 131072.0f);
  EXPECT_EQ(s.good_steps(), 0);
}

TEST(LossScalerTest, HandWrittenSequence) {
  LossScaler s({.init_scale = 1024, .growth_factor = 2, .backoff_factor = 0.5, .growth_interval = 2});
  // overflow, overflow, good, good (grow), good, overflow, good, good (grow)
  const bool pattern[] = {true, true, false, false, false, true, false, false};
  const float expected[] = {512, 256, 256, 512, 512, 256, 256, 512};
  for (int i = 0; i < 8; ++i) {
    s.Update(pattern[i]);
    EXPECT_EQ(s.scale(), expected[i]) << "after update " << i;
  }
}

// scale after step t = init * growth^G * backoff^B, where B counts the overflows so far and G
// sums floor(length / interval) over the runs of good steps (each run ended by an overflow or by
// now); good_steps is the current run's length mod interval.
TEST(LossScalerTest, RandomOverflowPatternsFollowTheClosedForm) {
  std::mt19937_64 rng(5);
  for (int interval : {1, 3, 7}) {
    const double growth = 4, backoff = 0.25, init = 1 << 20;
    LossScaler s({.init_scale = init, .growth_factor = growth, .backoff_factor = backoff,
                  .growth_interval = interval});
    int overflows = 0, grown_in_closed_runs = 0, run = 0;
    // Few enough steps that the scale stays inside f32's normal range (see the next test).
    for (int t = 0; t < (interval == 1 ? 60 : 300); ++t) {
      const bool overflow = std::bernoulli_distribution(0.2)(rng);
      s.Update(overflow);
      if (overflow) {
        ++overflows;
        grown_in_closed_runs += run / interval;
        run = 0;
      } else {
        ++run;
      }
      const int growths = grown_in_closed_runs + run / interval;
      const double expected = init * std::pow(growth, growths) * std::pow(backoff, overflows);
      ASSERT_EQ(s.scale(), static_cast<float>(expected)) << "interval " << interval << " step " << t;
      ASSERT_EQ(s.good_steps(), run % interval);
    }
  }
}

TEST(LossScalerTest, NeverGrowsToInfinityNorShrinksToZero) {
  LossScaler up({.init_scale = 0x1p127, .growth_interval = 1});
  up.Update(false);
  EXPECT_EQ(up.scale(), 0x1p127f);
  EXPECT_EQ(up.good_steps(), 0);
  LossScaler down({.init_scale = 1});
  for (int i = 0; i < 200; ++i) down.Update(true);
  EXPECT_EQ(down.scale(), std::numeric_limits<float>::min());
}

TEST(LossScalerTest, RejectsBadOptionsByField) {
  using testing::ExpectStatus;
  const auto bad = absl::StatusCode::kInvalidArgument;
  EXPECT_TRUE(LossScaleOptions{}.Validate().ok());
  ExpectStatus(LossScaleOptions{.init_scale = 0}.Validate(), bad, {"init_scale = 0"});
  ExpectStatus(LossScaleOptions{.init_scale = 1e39}.Validate(), bad, {"init_scale"});
  ExpectStatus(LossScaleOptions{.init_scale = NAN}.Validate(), bad, {"init_scale"});
  ExpectStatus(LossScaleOptions{.growth_factor = 1}.Validate(), bad, {"growth_factor = 1", "> 1"});
  ExpectStatus(LossScaleOptions{.backoff_factor = 1}.Validate(), bad, {"backoff_factor = 1"});
  ExpectStatus(LossScaleOptions{.backoff_factor = 0}.Validate(), bad, {"backoff_factor = 0"});
  ExpectStatus(LossScaleOptions{.growth_interval = 0}.Validate(), bad, {"growth_interval = 0"});
}

TEST(LossScalerTest, RestoresACheckpointedState) {
  LossScaler s({.growth_interval = 4});
  ASSERT_TRUE(s.Restore(128, 3).ok());
  EXPECT_EQ(s.scale(), 128.0f);
  s.Update(false);
  EXPECT_EQ(s.scale(), 256.0f);
  testing::ExpectStatus(s.Restore(0, 0), absl::StatusCode::kInvalidArgument, {"scale 0"});
  testing::ExpectStatus(s.Restore(8, 4), absl::StatusCode::kInvalidArgument,
                        {"good_steps 4", "growth_interval = 4"});
}

}  // namespace
}  // namespace strata::optim
