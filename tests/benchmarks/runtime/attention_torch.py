"""PyTorch peers of attention_benchmark.cc; attention is the unfused version (scores, causal
mask, softmax, times v; autograd backward), which keeps the T x T probabilities."""
import math

B, H, T, D = 8, 6, 256, 64


def cases(torch):
    F = torch.nn.functional
    qkv = torch.rand(B, T, 3 * H * D, requires_grad=True)
    dy = torch.rand(B, T, H * D)
    mask = torch.ones(T, T, dtype=torch.bool).tril()

    def attention():
        q, k, v = qkv.view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(D))
        p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
        return (p @ v).transpose(1, 2).reshape(B, T, H * D)

    def fwd():
        with torch.no_grad():
            attention()

    def fwd_bwd():
        qkv.grad = None
        attention().backward(dy)

    out = {"attention/fwd/B8_H6_T256_D64": fwd, "attention/fwd+bwd/B8_H6_T256_D64": fwd_bwd}
    for vocab in (256, 8192):
        logits = (torch.rand(2048, vocab) * 8 - 4).requires_grad_()
        targets = (torch.arange(2048) * 7919) % vocab

        def ce(logits=logits, targets=targets):
            logits.grad = None
            F.cross_entropy(logits, targets).backward()

        out[f"cross_entropy/fwd+bwd/2048x{vocab}"] = ce
    return out
