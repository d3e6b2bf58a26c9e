#!/usr/bin/python3
"""The PyTorch peer of strata-gpt --arch llama for launch/bench-gpt --arch llama: the same
Llama-architecture model (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU, untied
head), AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on tensors with 2+ dimensions),
global-norm clipping at 1.0 and llm.c's sequential batches, in float32 on the CPU. Prints one JSON
line with the step times in milliseconds and the PyTorch version. Under PyTorch 2.x it uses what
that version does best on a CPU: fused attention (scaled_dot_product_attention, with enable_gqa
where the version has it) and the fused AdamW; Debian's torch 1.13 runs the unfused forms.

    /usr/bin/python3 llama_train_torch.py --data tokens.txt --layers 16 --width 768 --heads 12 \
        --kv-heads 4 --ffn 2048 --seq 256 --batch 4 --steps 10 --threads 2
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn.functional as F

SDPA = getattr(F, "scaled_dot_product_attention", None)


def sdpa_takes_gqa():
    """Whether this torch's fused attention takes fewer key/value heads (enable_gqa, 2.5+)."""
    if SDPA is None:
        return False
    try:
        q, kv = torch.zeros(1, 2, 1, 4), torch.zeros(1, 1, 1, 4)
        SDPA(q, kv, kv, is_causal=True, enable_gqa=True)
        return True
    except TypeError:
        return False


SDPA_GQA = sdpa_takes_gqa()


class RmsNorm(torch.nn.Module):
    def __init__(self, width, eps=1e-6):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate(x, cos, sin):  # transformers' rotate_half layout; x (B, H, T, D)
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


class Layer(torch.nn.Module):
    def __init__(self, width, heads, kv_heads, ffn):
        super().__init__()
        self.heads, self.kv_heads, self.d = heads, kv_heads, width // heads
        self.input_layernorm = RmsNorm(width)
        self.q_proj = torch.nn.Linear(width, heads * self.d, bias=False)
        self.k_proj = torch.nn.Linear(width, kv_heads * self.d, bias=False)
        self.v_proj = torch.nn.Linear(width, kv_heads * self.d, bias=False)
        self.o_proj = torch.nn.Linear(heads * self.d, width, bias=False)
        self.post_attention_layernorm = RmsNorm(width)
        self.gate_proj = torch.nn.Linear(width, ffn, bias=False)
        self.up_proj = torch.nn.Linear(width, ffn, bias=False)
        self.down_proj = torch.nn.Linear(ffn, width, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(b, t, self.heads, self.d).transpose(1, 2)
        k = self.k_proj(h).view(b, t, self.kv_heads, self.d).transpose(1, 2)
        v = self.v_proj(h).view(b, t, self.kv_heads, self.d).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        group = self.heads // self.kv_heads
        if SDPA_GQA:
            y = SDPA(q, k, v, is_causal=True, enable_gqa=True)
        else:
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
            if SDPA is not None:
                y = SDPA(q, k, v, is_causal=True)
            else:  # Debian's torch 1.13: the standard unfused form
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d))
                y = F.softmax(att.masked_fill(mask[:t, :t] == 0, float("-inf")), dim=-1) @ v
        x = x + self.o_proj(y.transpose(1, 2).reshape(b, t, -1))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(torch.nn.Module):
    def __init__(self, vocab, seq, layers, width, heads, kv_heads, ffn, theta=10000.0):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(vocab, width)
        self.layers = torch.nn.ModuleList(Layer(width, heads, kv_heads, ffn) for _ in range(layers))
        self.norm = RmsNorm(width)
        self.lm_head = torch.nn.Linear(width, vocab, bias=False)
        d = width // heads
        inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
        freqs = torch.arange(seq, dtype=torch.float64)[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos().float())
        self.register_buffer("sin", emb.sin().float())
        self.register_buffer("mask", torch.tril(torch.ones(seq, seq)))

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.embed_tokens(idx)
        for layer in self.layers:
            x = layer(x, self.cos[:t], self.sin[:t], self.mask)
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def main():
    p = argparse.ArgumentParser()
    for name, default in [("layers", 16), ("width", 768), ("heads", 12), ("kv-heads", 4),
                          ("ffn", 2048), ("seq", 256), ("batch", 4), ("steps", 10),
                          ("threads", 2), ("vocab", 256)]:
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--data", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tokens = torch.tensor(list(open(a.data, "rb").read()), dtype=torch.long)
    model = Llama(a.vocab, a.seq, a.layers, a.width, a.heads, a.kv_heads, a.ffn)
    for m in model.modules():  # transformers' initialization
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
            torch.nn.init.normal_(m.weight, 0.0, 0.02)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}]
    fused = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 4)  # fused on CPU
    opt = torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.95), eps=1e-8,
                            **({"fused": True} if fused else {}))
    n, bt = len(tokens), a.batch * a.seq
    times, losses = [], []
    for s in range(a.steps):
        start = (s * bt) % (n - bt - 1)
        chunk = tokens[start:start + bt + 1]
        x, y = chunk[:-1].view(a.batch, a.seq), chunk[1:].view(a.batch, a.seq)
        t0 = time.perf_counter()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append((time.perf_counter() - t0) * 1e3)
        losses.append(loss.item())
    print(json.dumps({"step_ms": times, "loss": losses, "torch": torch.__version__,
                      "fused_adamw": fused, "sdpa_gqa": SDPA_GQA,
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
