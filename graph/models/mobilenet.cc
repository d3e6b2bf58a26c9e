#include "graph/models/mobilenet.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace strata::graph {

absl::Status MobileNetConfig::Validate() const {
  auto bad = [](const std::string& field, int64_t value, const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("mobilenet config: ", field, " = ", value, " ", why));
  };
  if (in_channels <= 0) return bad("in_channels", in_channels, "must be positive");
  if (classes <= 0) return bad("classes", classes, "must be positive");
  if (stem <= 0) return bad("stem", stem, "must be positive");
  if (head <= 0) return bad("head", head, "must be positive");
  if (blocks.empty()) return absl::InvalidArgumentError("mobilenet config: blocks is empty");
  int64_t channels = stem;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const InvertedResidualConfig& b = blocks[i];
    const std::string at = absl::StrCat("blocks[", i, "].");
    if (b.in != channels) {
      return bad(at + "in", b.in, absl::StrCat("must equal the channels before it, ", channels));
    }
    if (b.out <= 0) return bad(at + "out", b.out, "must be positive");
    if (b.stride < 1) return bad(at + "stride", b.stride, "must be >= 1");
    if (b.expand < 1) return bad(at + "expand", b.expand, "must be >= 1");
    channels = b.out;
  }
  return absl::OkStatus();
}

namespace nn {

ConvBn::ConvBn(int64_t in, int64_t out, int64_t kernel, int stride, int groups, bool relu6,
               bool frozen_bn)
    : relu6_(relu6) {
  Conv2dOptions o;
  o.kernel = kernel;
  o.params.stride_h = o.params.stride_w = stride;
  o.params.pad_h = o.params.pad_w = static_cast<int>(kernel / 2);
  o.params.groups = groups;
  o.bias = false;
  conv_ = Add<Conv2d>("conv", in, out, o);
  bn_ = Add<BatchNorm2d>("bn", out);
  bn_->SetFrozen(frozen_bn);
}

Var ConvBn::Forward(Var x) {
  TraceScope scope(*this, x);
  Var y = (*bn_)((*conv_)(x));
  return relu6_ ? ops::Relu6(y) : y;
}

InvertedResidual::InvertedResidual(const InvertedResidualConfig& c, bool frozen_bn)
    : residual_(c.stride == 1 && c.in == c.out) {
  const int64_t hidden = c.in * c.expand;
  if (c.expand != 1) {
    expand_ = Add<ConvBn>("expand", c.in, hidden, 1, 1, 1, /*relu6=*/true, frozen_bn);
  }
  depthwise_ = Add<ConvBn>("depthwise", hidden, hidden, 3, c.stride, static_cast<int>(hidden),
                           /*relu6=*/true, frozen_bn);
  project_ = Add<ConvBn>("project", hidden, c.out, 1, 1, 1, /*relu6=*/false, frozen_bn);
}

Var InvertedResidual::Forward(Var x) {
  TraceScope scope(*this, x);
  Var h = expand_ ? (*expand_)(x) : x;
  h = (*project_)((*depthwise_)(h));
  return residual_ ? ops::Add(x, h) : h;
}

}  // namespace nn

MobileNet::MobileNet(const MobileNetConfig& c) : config_(c) {
  const bool frozen = c.frozen_batchnorm;
  stem_ = Add<nn::ConvBn>("stem", c.in_channels, c.stem, 3, 1, 1, /*relu6=*/true, frozen);
  auto* blocks = Add<Module>("blocks");
  for (size_t i = 0; i < c.blocks.size(); ++i) {
    // Blocks live under "blocks" so that their paths are blocks.0, blocks.1, ...
    blocks_.push_back(blocks->Add<nn::InvertedResidual>(std::to_string(i), c.blocks[i], frozen));
    blocks_.back()->SetRecomputeBoundary(true);  // the unit of TrainOptions::recompute
  }
  const int64_t last = c.blocks.empty() ? c.stem : c.blocks.back().out;
  head_ = Add<nn::ConvBn>("head", last, c.head, 1, 1, 1, /*relu6=*/true, frozen);
  classifier_ = Add<nn::Linear>("classifier", c.head, c.classes);

  ForEachParameter([](const std::string& path, Parameter& p) {
    const Shape& s = p.shape();
    if (path.ends_with(".conv.weight")) {
      const double fan_out = static_cast<double>(s[0] * s[2] * s[3]);
      p.set_init(Init::Normal(0, std::sqrt(2.0 / fan_out)));
    } else if (path == "classifier.weight") {
      p.set_init(Init::Normal(0, 0.01));
    } else if (path == "classifier.bias") {
      p.set_init(Init::Zeros());
    }  // BatchNorm: ones and zeros already
  });
}

Var MobileNet::Forward(Var images) {
  TraceScope scope(*this, images);
  if (images.valid() && (images.rank() != 4 || images.dim(1) != config_.in_channels ||
                         images.dtype() != DType::kF32)) {
    images.tracer()->Fail(absl::InvalidArgumentError(
        absl::StrCat("mobilenet: images are ", images.type().ToString(), ", expected f32 (N, ",
                     config_.in_channels, ", H, W)")));
    return Var();
  }
  Var x = (*stem_)(images);
  for (nn::InvertedResidual* block : blocks_) x = (*block)(x);
  x = ops::GlobalAvgPool((*head_)(x));
  return (*classifier_)(x);
}

}  // namespace strata::graph
