"""PyTorch peers of gemm_benchmark.cc: the same names, the same work."""

ROWS = 8 * 256
LAYERS = [(384, 1152), (384, 384), (384, 1536), (1536, 384)]


def cases(torch):
    out = {}
    for i, o in LAYERS:
        shape = f"{ROWS}x{i}x{o}"
        x = torch.rand(ROWS, i, requires_grad=True)
        w = torch.rand(o, i, requires_grad=True)
        b = torch.rand(o, requires_grad=True)
        dy = torch.rand(ROWS, o)

        def linear(x=x, w=w, b=b, dy=dy):
            x.grad = w.grad = b.grad = None
            torch.nn.functional.linear(x, w, b).backward(dy)

        a, m = torch.rand(ROWS, i), torch.rand(i, o)
        out[f"linear/fwd+bwd/{shape}"] = linear
        out[f"gemm/strata/{shape}"] = lambda a=a, m=m: torch.mm(a, m)
    return out
