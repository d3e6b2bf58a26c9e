// A small MobileNetV2-style CNN for 28x28 images (Fashion-MNIST): a 3x3 stem, inverted residual
// blocks (1x1 expand, 3x3 depthwise, 1x1 linear project, residual when the shape is kept), a
// 1x1 head, global average pooling and a linear classifier. BatchNorms run in training mode
// (batch statistics in a step, running statistics, which are buffers, in Evaluate), or frozen
// with MobileNetConfig::frozen_batchnorm. Parameter paths match the PyTorch reference in
// tests/fixtures/graph_ops/cnn_train.py:
//
//   stem.conv.weight (16, 1, 3, 3), stem.bn.{weight, bias, running_mean, running_var}
//   blocks.1.expand.conv.weight (64, 16, 1, 1), blocks.1.depthwise.conv.weight (64, 1, 3, 3),
//   blocks.1.project.conv.weight (24, 64, 1, 1), ... head.conv.weight (128, 32, 1, 1),
//   classifier.weight (10, 128), classifier.bias (10)
//
//   MobileNet net(MobileNetConfig{});
//   Var logits = net.Forward(images);     // images (N, 1, 28, 28) f32 -> (N, 10)
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "graph/nn/layers.h"

namespace strata::graph {

struct InvertedResidualConfig {
  int64_t in = 16, out = 16;
  int stride = 1;
  int64_t expand = 1;  // hidden channels = in * expand; 1: no expand convolution
};

struct MobileNetConfig {
  int64_t in_channels = 1;
  int64_t classes = 10;
  int64_t stem = 16;
  std::vector<InvertedResidualConfig> blocks = {
      {16, 16, 1, 1}, {16, 24, 2, 4}, {24, 24, 1, 4}, {24, 32, 2, 4}, {32, 32, 1, 4}};
  int64_t head = 128;
  // True: every BatchNorm normalizes with its running statistics, which stay as they are
  // (nn::BatchNorm2d::SetFrozen), for fine-tuning a pretrained model.
  bool frozen_batchnorm = false;
  absl::Status Validate() const;  // names the bad field
};

namespace nn {

// conv (no bias) -> bn (frozen when `frozen_bn`) -> ReLU6 when `relu6`; children "conv" and
// "bn".
class ConvBn : public Layer {
 public:
  ConvBn(int64_t in, int64_t out, int64_t kernel, int stride, int groups, bool relu6,
         bool frozen_bn);
  Var Forward(Var x) override;

 private:
  Conv2d* conv_;
  BatchNorm2d* bn_;
  bool relu6_;
};

// [expand: 1x1 ConvBn + ReLU6, when expand != 1] -> depthwise: 3x3 ConvBn + ReLU6 ->
// project: 1x1 ConvBn, linear; plus the input when stride == 1 and in == out.
class InvertedResidual : public Layer {
 public:
  InvertedResidual(const InvertedResidualConfig& c, bool frozen_bn);
  Var Forward(Var x) override;

 private:
  ConvBn* expand_ = nullptr;
  ConvBn* depthwise_;
  ConvBn* project_;
  bool residual_;
};

}  // namespace nn

class MobileNet : public Module {
 public:
  // torchvision's MobileNetV2 initialization: convolutions N(0, sqrt(2 / fan_out)) with
  // fan_out = out_channels * kh * kw (kaiming_normal_, mode "fan_out"), BatchNorm weight 1, bias
  // 0, running mean 0, variance 1; classifier weight N(0, 0.01), bias 0.
  explicit MobileNet(const MobileNetConfig& config);
  const MobileNetConfig& config() const { return config_; }
  // images (N, in_channels, H, W) f32 -> logits (N, classes).
  Var Forward(Var images);

 private:
  MobileNetConfig config_;
  nn::ConvBn* stem_;
  std::vector<nn::InvertedResidual*> blocks_;
  nn::ConvBn* head_;
  nn::Linear* classifier_;
};

}  // namespace strata::graph
