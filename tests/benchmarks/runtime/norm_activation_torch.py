"""PyTorch peers of norm_activation_benchmark.cc."""


def cases(torch):
    F = torch.nn.functional
    x = torch.rand(2048, 384, requires_grad=True)
    g = torch.rand(384, requires_grad=True)
    b = torch.rand(384, requires_grad=True)
    dy = torch.rand(2048, 384)

    def layernorm():
        x.grad = g.grad = b.grad = None
        F.layer_norm(x, (384,), g, b, 1e-5).backward(dy)

    h = (torch.rand(2048, 1536) * 8 - 4).requires_grad_()
    dh = torch.rand(2048, 1536)

    def gelu():
        h.grad = None
        F.gelu(h, approximate="tanh").backward(dh)

    s = (torch.rand(8 * 6 * 256, 256) * 8 - 4).requires_grad_()
    ds = torch.rand(8 * 6 * 256, 256)

    def softmax():
        s.grad = None
        torch.softmax(s, dim=-1).backward(ds)

    a1, a2, o = torch.rand(2048, 384), torch.rand(2048, 384), torch.empty(2048, 384)
    return {"layernorm/fwd+bwd/2048x384": layernorm, "gelu/fwd+bwd/2048x1536": gelu,
            "softmax/fwd+bwd/12288x256": softmax, "add/fwd/2048x384": lambda: torch.add(a1, a2, out=o)}
