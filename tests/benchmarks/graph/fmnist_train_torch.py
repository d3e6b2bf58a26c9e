#!/usr/bin/python3
"""strata-fmnist's model and recipe in PyTorch, the peer launch/bench-fmnist compares against.

    /usr/bin/python3 tests/benchmarks/graph/fmnist_train_torch.py --threads 2 --seed 0

The MobileNetV2-style CNN of graph/models/mobilenet.h (3x3 stem 16, inverted residual blocks
(in, out, stride, expand) (16,16,1,1) (16,24,2,4) (24,24,1,4) (24,32,2,4) (32,32,1,4), 1x1 head
128, global average pool, Linear(128, 10)), training-mode BatchNorm (momentum 0.1, eps 1e-5),
torchvision's initialization; images scaled as (x / 255 - 0.2860) / 0.3530. SGD with momentum
0.9 or AdamW, weight decay on 2+-dimensional tensors only, linear warm-up then cosine to 0 at
the last step (the schedule of optim/lr_schedule.cc), a new shuffle each epoch, the last partial
batch dropped. Prints one JSON object: test accuracy and seconds of training per epoch, the
median step time and the peak RSS. With --sparse-update FILE (strata's JSON rules,
graph/sparse_update.h; launch/bench-sparse) only the selected parameters have requires_grad and
each BatchNorm whose weight does not train stays in eval mode, as strata fine-tunes.
Needs Debian's python3-torch and dataset-fashion-mnist.
"""
import argparse
import fnmatch
import gzip
import json
import math
import pathlib
import re
import resource
import statistics
import time

import torch
import torch.nn.functional as F

BLOCKS = [(16, 16, 1, 1), (16, 24, 2, 4), (24, 24, 1, 4), (24, 32, 2, 4), (32, 32, 1, 4)]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def load(directory, split):
    images = read_idx(pathlib.Path(directory) / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(pathlib.Path(directory) / f"{split}-labels-idx1-ubyte.gz")
    x = (images.float().unsqueeze(1) / 255 - 0.2860) / 0.3530
    return x, labels.long()


class ConvBn(torch.nn.Sequential):
    def __init__(self, cin, cout, k, stride, groups, relu6):
        layers = [torch.nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                  torch.nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)]
        if relu6:
            layers.append(torch.nn.ReLU6())
        super().__init__(*layers)


class InvertedResidual(torch.nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.expand = ConvBn(cin, hidden, 1, 1, 1, True) if expand != 1 else None
        self.depthwise = ConvBn(hidden, hidden, 3, stride, hidden, True)
        self.project = ConvBn(hidden, cout, 1, 1, 1, False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = self.expand(x) if self.expand is not None else x
        h = self.project(self.depthwise(h))
        return x + h if self.residual else h


class MobileNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = ConvBn(1, 16, 3, 1, 1, True)
        self.blocks = torch.nn.Sequential(*[InvertedResidual(*b) for b in BLOCKS])
        self.head = ConvBn(32, 128, 1, 1, 1, True)
        self.classifier = torch.nn.Linear(128, 10)
        for m in self.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out")
        torch.nn.init.normal_(self.classifier.weight, 0, 0.01)
        torch.nn.init.zeros_(self.classifier.bias)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(x.mean(dim=(2, 3)))


def strata_path(name):
    """This model's parameter names in strata's paths (graph/models/mobilenet.h): a ConvBn's
    conv and bn are its children 0 and 1 here."""
    return re.sub(r"\.1\.(weight|bias)$", r".bn.\1", re.sub(r"\.0\.weight$", ".conv.weight", name))


def apply_sparse_update(model, rules):
    """strata's rules as requires_grad (later rules override, unmatched parameters are frozen,
    bias_only trains *.bias, a trained weight trains its bias); returns the BatchNorms to keep in
    eval mode (those whose weight does not train)."""
    params = dict(model.named_parameters())
    paths = {strata_path(n): n for n in params}
    train = {path: False for path in paths}
    for rule in rules:
        for path in paths:
            if fnmatch.fnmatchcase(path, rule["match"]):
                train[path] = rule["update"] == "full" or (
                    rule["update"] == "bias_only" and path.endswith(".bias"))
    for path in list(train):
        if train[path] and path.endswith(".weight") and path[:-6] + "bias" in train:
            train[path[:-6] + "bias"] = True
    for path, name in paths.items():
        params[name].requires_grad_(train[path])
    return [m for m in model.modules()
            if isinstance(m, torch.nn.BatchNorm2d) and not m.weight.requires_grad]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--weight-decay", type=float, required=True)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-train", type=int, default=0, help="first N training images (0: all)")
    p.add_argument("--limit-test", type=int, default=0, help="first N test images (0: all)")
    p.add_argument("--sparse-update", default="", help="strata's JSON rules: train only those")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train_x, train_y = load(a.data, "train")
    test_x, test_y = load(a.data, "t10k")
    if a.limit_train > 0:
        train_x, train_y = train_x[:a.limit_train], train_y[:a.limit_train]
    if a.limit_test > 0:
        test_x, test_y = test_x[:a.limit_test], test_y[:a.limit_test]

    model = MobileNet()
    frozen_bn = apply_sparse_update(model, json.load(open(a.sparse_update))) if a.sparse_update else []
    decay = [q for q in model.parameters() if q.dim() >= 2 and q.requires_grad]
    no_decay = [q for q in model.parameters() if q.dim() < 2 and q.requires_grad]
    groups = [{"params": decay, "weight_decay": a.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=a.lr, momentum=0.9)
    else:
        opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    steps_per_epoch = len(train_x) // a.batch
    total = steps_per_epoch * a.epochs

    def lr_at(step):  # optim/lr_schedule.cc, cosine to 0
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        progress = (step - a.warmup) / (total - a.warmup)
        return a.lr * 0.5 * (1 + math.cos(math.pi * progress))

    result = {"epochs": []}
    step_ms = []
    step = 0
    for epoch in range(1, a.epochs + 1):
        model.train()
        for bn in frozen_bn:
            bn.eval()
        order = torch.randperm(len(train_x))
        start = time.perf_counter()
        for s in range(steps_per_epoch):
            t0 = time.perf_counter()
            idx = order[s * a.batch:(s + 1) * a.batch]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx],
                                   label_smoothing=a.label_smoothing)
            loss.backward()
            opt.step()
            step += 1
            step_ms.append((time.perf_counter() - t0) * 1e3)
        train_s = time.perf_counter() - start
        model.eval()
        correct = 0
        with torch.no_grad():
            for first in range(0, len(test_x), a.batch):
                logits = model(test_x[first:first + a.batch])
                correct += (logits.argmax(1) == test_y[first:first + a.batch]).sum().item()
        result["epochs"].append({"epoch": epoch, "test_accuracy": correct / len(test_x),
                                 "epoch_s": train_s})
    result["median_step_ms"] = statistics.median(step_ms[2:] if len(step_ms) > 3 else step_ms)
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
