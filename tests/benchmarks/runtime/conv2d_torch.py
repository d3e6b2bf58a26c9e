"""PyTorch peers of conv2d_benchmark.cc: conv2d forward and autograd backward (dx, dw, db)."""

# name: (x shape, w shape, stride, padding, groups)
CASES = {
    "regular_N64_C1_28x28_OC32_k3s1p1": ((64, 1, 28, 28), (32, 1, 3, 3), 1, 1, 1),
    "regular_N64_C32_14x14_OC64_k3s1p1": ((64, 32, 14, 14), (64, 32, 3, 3), 1, 1, 1),
    "pointwise_N64_C32_14x14_OC96_k1": ((64, 32, 14, 14), (96, 32, 1, 1), 1, 0, 1),
    "depthwise_N64_C96_14x14_k3s1p1": ((64, 96, 14, 14), (96, 1, 3, 3), 1, 1, 96),
    "depthwise_N64_C96_14x14_k3s2p1": ((64, 96, 14, 14), (96, 1, 3, 3), 2, 1, 96),
}


def cases(torch):
    out = {}
    for name, (xs, ws, stride, pad, groups) in CASES.items():
        x = torch.rand(xs, requires_grad=True)
        w = torch.rand(ws, requires_grad=True)
        b = torch.rand(ws[0], requires_grad=True)
        y = torch.nn.functional.conv2d(x, w, b, stride, pad, 1, groups)
        dy = torch.rand_like(y)

        def conv(x=x, w=w, b=b, dy=dy, stride=stride, pad=pad, groups=groups):
            x.grad = w.grad = b.grad = None
            torch.nn.functional.conv2d(x, w, b, stride, pad, 1, groups).backward(dy)

        out[f"conv2d/fwd+bwd/{name}"] = conv
    return out
