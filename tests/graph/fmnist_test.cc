// strata-fmnist's recipe trains the MobileNetV2-style CNN to at least 89% Fashion-MNIST test
// accuracy with its defaults (two epochs), for any seed. A training run, not a unit test: it needs
// Debian's dataset-fashion-mnist (skipped without it) and is skipped in sanitizer builds, where
// it would take hours. Two seeds, so that a recipe that only works for a lucky one fails.
#include <cstdio>
#include <string>

#include "examples/fmnist/fashion_mnist.h"
#include "examples/fmnist/fmnist_train.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#if defined(__SANITIZE_ADDRESS__)
#define STRATA_FMNIST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRATA_FMNIST_SANITIZED 1
#endif
#endif

namespace strata::examples {
namespace {

using ::testing::HasSubstr;

TEST(FashionMnistTest, MissingFilesAreNamed) {
  absl::StatusOr<FashionMnist> d = LoadFashionMnist("/nonexistent/fashion-mnist");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(),
              HasSubstr("/nonexistent/fashion-mnist/train-images-idx3-ubyte.gz"));
}

TEST(FashionMnistTest, RecipeErrorsNameTheFlag) {
  FmnistRecipe r;
  EXPECT_TRUE(r.Validate(60000).ok());
  r.optimizer = "adam";
  EXPECT_THAT(r.Validate(60000).message(), HasSubstr("--optimizer = adam"));
  r = FmnistRecipe{};
  r.limit_train = 10;
  EXPECT_THAT(r.Validate(60000).message(), HasSubstr("--batch = 64: is more than the 10"));
  r = FmnistRecipe{};
  r.limit_train = 640;  // 10 steps an epoch, 20 in all
  EXPECT_THAT(r.Validate(60000).message(),
              HasSubstr("--warmup = 200: must be less than the run's 20 steps"));
  r = FmnistRecipe{};
  EXPECT_EQ(r.resolved_lr(), 0.05);
  EXPECT_EQ(r.resolved_weight_decay(), 5e-4);
  r.optimizer = "adamw";
  EXPECT_EQ(r.resolved_lr(), 1e-3);
  EXPECT_EQ(r.resolved_weight_decay(), 0.01);
}

TEST(FashionMnistTest, DefaultsReach89PercentTestAccuracyForTwoSeeds) {
#ifdef STRATA_FMNIST_SANITIZED
  GTEST_SKIP() << "a training run, not a unit test: skipped in sanitizer builds";
#endif
  absl::StatusOr<FashionMnist> data = LoadFashionMnist(kFashionMnistDir);
  if (!data.ok()) {
    GTEST_SKIP() << "Fashion-MNIST is not installed (" << data.status().message()
                 << "); install Debian's dataset-fashion-mnist (launch/setup does)";
  }
  ASSERT_EQ(data->train.size(), 60000);
  ASSERT_EQ(data->test.size(), 10000);

  // Normalization: (x / 255 - 0.2860) / 0.3530.
  Tensor images = Tensor::Empty(Shape{1, 1, 28, 28}, DType::kF32, DefaultCpuAllocator()).value();
  Tensor labels = Tensor::Empty(Shape{1}, DType::kI32, DefaultCpuAllocator()).value();
  const int64_t index[] = {0};
  FillBatch(data->train, index, images, labels);
  EXPECT_EQ(labels.data<int32_t>()[0], data->train.labels[0]);
  for (int p = 0; p < 28 * 28; ++p) {
    ASSERT_NEAR(images.data<float>()[p], (data->train.pixels[p] / 255.0 - 0.2860) / 0.3530, 1e-6);
  }

  for (uint64_t seed : {0, 1}) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    FmnistRecipe recipe;  // what strata-fmnist runs without flags
    recipe.seed = seed;
    absl::StatusOr<std::unique_ptr<FmnistTrainer>> trainer = FmnistTrainer::Create(*data, recipe);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    double accuracy = 0;
    for (int64_t e = 1; e <= recipe.epochs; ++e) {
      absl::StatusOr<FmnistEpoch> ep = (*trainer)->TrainEpoch(nullptr);
      ASSERT_TRUE(ep.ok()) << ep.status();
      std::printf("seed %llu epoch %lld: train loss %.4f, test loss %.4f, test accuracy %.4f, "
                  "%.1f s training, %.1f s testing\n",
                  static_cast<unsigned long long>(seed), static_cast<long long>(e),
                  ep->train_loss, ep->test_loss, ep->test_accuracy, ep->train_s, ep->test_s);
      std::fflush(stdout);
      EXPECT_EQ(ep->test_size, 10000);
      accuracy = ep->test_accuracy;
    }
    EXPECT_GE(accuracy, 0.89);
  }
}

}  // namespace
}  // namespace strata::examples
