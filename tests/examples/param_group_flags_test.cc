// --param-group (examples/common/param_group_flags.h): the syntax, errors that name the flag and
// the bad part, the repeatable flag that carries it, and how a resume treats the groups of a
// checkpoint written before they were recorded (RunConfig::AddWithUnrecorded).
#include "examples/common/param_group_flags.h"

#include <map>
#include <string>
#include <vector>

#include "examples/common/flags.h"
#include "examples/common/run_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::examples {
namespace {

using ::testing::HasSubstr;

TEST(ParamGroupFlagTest, ParsesAPatternAndItsSettings) {
  absl::StatusOr<graph::ParamGroup> g = ParseParamGroupFlag("*.bias:lr_scale=0.1,weight_decay=0");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->match, "*.bias");
  EXPECT_EQ(g->lr_scale, 0.1);
  ASSERT_TRUE(g->weight_decay.has_value());
  EXPECT_EQ(*g->weight_decay, 0.0);

  g = ParseParamGroupFlag("h.*.ln_*:weight_decay=1e-3");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->match, "h.*.ln_*");
  EXPECT_EQ(g->lr_scale, 1.0);  // left out: unchanged
  EXPECT_EQ(*g->weight_decay, 1e-3);

  g = ParseParamGroupFlag("wte.weight:lr_scale=0");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->lr_scale, 0.0);
  EXPECT_FALSE(g->weight_decay.has_value());  // left out: the default rule

  // The settings start after the last ':', so a pattern may hold one.
  g = ParseParamGroupFlag("a:b:lr_scale=2");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->match, "a:b");
}

TEST(ParamGroupFlagTest, ErrorsNameTheFlagTheValueAndTheBadPart) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"*.bias", "--param-group '*.bias': expected PATTERN:lr_scale=X,weight_decay=Y"},
      {":lr_scale=1", "--param-group ':lr_scale=1': the pattern before ':' is empty"},
      {"*.bias:", "--param-group '*.bias:': no setting after ':'"},
      {"*.bias:lr_scal=0.1", "unknown setting 'lr_scal' (expected lr_scale or weight_decay)"},
      {"*.bias:lr_scale", "setting 'lr_scale' is not NAME=VALUE"},
      {"*.bias:lr_scale=", "lr_scale expects a number, got ''"},
      {"*.bias:lr_scale=0.1x", "lr_scale expects a number, got '0.1x'"},
      {"*.bias:weight_decay=-0.1", "weight_decay = -0.1 must be a finite number >= 0"},
      {"*.bias:lr_scale=-1", "lr_scale = -1 must be a finite number >= 0"},
      {"*.bias:lr_scale=nan", "lr_scale = nan must be a finite number >= 0"},
      {"*.bias:lr_scale=inf", "lr_scale = inf must be a finite number"},
      {"*.bias:lr_scale=1e999", "lr_scale expects a number, got '1e999'"},
      {"*.bias:lr_scale=1,lr_scale=2", "lr_scale is given twice"},
      {"*.bias:lr_scale=1,", "setting '' is not NAME=VALUE"},
  };
  for (const auto& [text, error] : cases) {
    SCOPED_TRACE(text);
    const absl::StatusOr<graph::ParamGroup> g = ParseParamGroupFlag(text);
    ASSERT_FALSE(g.ok());
    EXPECT_TRUE(IsUsageError(g.status()));
    EXPECT_THAT(g.status().message(), HasSubstr(error));
  }
}

TEST(ParamGroupFlagTest, TheFlagRepeatsInOrderAndShowsInHelp) {
  Flags flags("prog", "test");
  std::vector<std::string> texts;
  AddParamGroupFlag(flags, &texts);
  const char* argv[] = {"prog", "--param-group", "*.bias:weight_decay=0",
                        "--param-group=h.0.*:lr_scale=0.5"};
  ASSERT_TRUE(flags.Parse(4, const_cast<char**>(argv)).ok());
  EXPECT_EQ(texts, (std::vector<std::string>{"*.bias:weight_decay=0", "h.0.*:lr_scale=0.5"}));
  const absl::StatusOr<std::vector<graph::ParamGroup>> groups = ParseParamGroupFlags(texts);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), 2u);
  EXPECT_EQ((*groups)[0].match, "*.bias");
  EXPECT_EQ((*groups)[1].match, "h.0.*");
  EXPECT_EQ((*groups)[1].lr_scale, 0.5);
  EXPECT_THAT(flags.Help(), HasSubstr("--param-group"));
  EXPECT_THAT(flags.Help(), HasSubstr("PATTERN:lr_scale=X,weight_decay=Y"));
  EXPECT_THAT(flags.Help(), HasSubstr("; repeatable"));

  const absl::StatusOr<std::vector<graph::ParamGroup>> bad =
      ParseParamGroupFlags({"*.bias:weight_decay=0", "oops"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("--param-group 'oops'"));
}

TEST(ParamGroupFlagTest, TheRecordedTextIsExact) {
  EXPECT_EQ(ParamGroupsText({}), "none");
  EXPECT_EQ(ParamGroupsText({{.match = "*.bias", .lr_scale = 0.1, .weight_decay = 0},
                             {.match = "h.*", .lr_scale = 2}}),
            "*.bias:lr_scale=0.10000000000000001,weight_decay=0; h.*:lr_scale=2,weight_decay=default");
}

// A checkpoint from before --param-group was recorded trained without groups: a run without
// groups resumes it, a run with groups is refused by name.
TEST(ParamGroupFlagTest, ACheckpointThatRecordsNoGroupsHadNone) {
  const std::map<std::string, std::string> old_checkpoint = {{"run.--lr", "0.001"}};
  RunConfig plain;
  plain.Add("--lr", std::string("0.001"));
  plain.AddWithUnrecorded("--param-group", ParamGroupsText({}), "none");
  absl::StatusOr<std::vector<std::string>> changes = plain.Check(old_checkpoint, "ckpt");
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->empty());

  RunConfig grouped;
  grouped.Add("--lr", std::string("0.001"));
  grouped.AddWithUnrecorded("--param-group", ParamGroupsText({{.match = "*.bias", .lr_scale = 0}}),
                            "none");
  changes = grouped.Check(old_checkpoint, "ckpt");
  ASSERT_FALSE(changes.ok());
  EXPECT_TRUE(IsUsageError(changes.status()));
  EXPECT_THAT(changes.status().message(),
              HasSubstr("the checkpoint's run has --param-group none, this run has --param-group "
                        "*.bias:lr_scale=0,weight_decay=default"));

  // Recorded: compared as any other field.
  std::map<std::string, std::string> recorded;
  grouped.Record(recorded);
  changes = grouped.Check(recorded, "ckpt");
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->empty());
  EXPECT_FALSE(plain.Check(recorded, "ckpt").ok());
}

}  // namespace
}  // namespace strata::examples
