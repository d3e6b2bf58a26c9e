#!/usr/bin/python3
"""The PyTorch peer of strata-gpt for launch/bench-gpt: the same GPT-2-architecture model, AdamW
(betas 0.9/0.95, eps 1e-8, weight decay 0.1 on tensors with 2+ dimensions), global-norm clipping
at 1.0 and llm.c's sequential batches, in float32 on the CPU. Prints one JSON line with the step
times in milliseconds and the PyTorch version. Under PyTorch 2.x (launch/bench-gpt --torch2) it uses
what that version does best on a CPU: fused attention (scaled_dot_product_attention) and the fused
AdamW; Debian's torch 1.13 has neither, and runs the standard unfused forms.

    /usr/bin/python3 gpt_train_torch.py --data tokens.txt --layers 6 --width 384 --heads 6 \
        --seq 256 --batch 8 --steps 10 --threads 2

With --sparse-update FILE (strata's JSON rules, launch/bench-sparse) only the selected parameters
have requires_grad, as a PyTorch user fine-tunes; --clip 0 turns clipping off.
"""
import argparse
import fnmatch
import json
import math
import re
import resource
import time

import torch
import torch.nn.functional as F


class Block(torch.nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = torch.nn.LayerNorm(width)
        self.c_attn = torch.nn.Linear(width, 3 * width)
        self.c_proj = torch.nn.Linear(width, width)
        self.ln_2 = torch.nn.LayerNorm(width)
        self.c_fc = torch.nn.Linear(width, 4 * width)
        self.mlp_proj = torch.nn.Linear(4 * width, width)
        self.register_buffer("mask", torch.tril(torch.ones(1024, 1024)).view(1, 1, 1024, 1024))

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        if hasattr(F, "scaled_dot_product_attention"):  # PyTorch 2.x: fused (flash) attention
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # Debian's torch 1.13: the standard unfused form
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
            att = att.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf"))
            y = F.softmax(att, dim=-1) @ v
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class Gpt(torch.nn.Module):
    def __init__(self, vocab, seq, layers, width, heads):
        super().__init__()
        self.wte = torch.nn.Embedding(vocab, width)
        self.wpe = torch.nn.Embedding(seq, width)
        self.h = torch.nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = torch.nn.LayerNorm(width)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def strata_path(name):
    """This model's parameter names in strata's GPT paths (graph/models/gpt.h)."""
    name = re.sub(r"^(h\.\d+)\.(c_attn|c_proj)\.", r"\1.attn.\2.", name)
    name = re.sub(r"^(h\.\d+)\.c_fc\.", r"\1.mlp.c_fc.", name)
    return re.sub(r"^(h\.\d+)\.mlp_proj\.", r"\1.mlp.c_proj.", name)


def apply_sparse_update(model, rules):
    """strata's --sparse-update rules (graph/sparse_update.h: later rules override, unmatched
    parameters are frozen, bias_only trains *.bias, a trained weight trains its bias) as
    requires_grad; returns the number of trained tensors."""
    paths = {strata_path(n): p for n, p in model.named_parameters()}
    train = {path: False for path in paths}
    for rule in rules:
        for path in paths:
            if fnmatch.fnmatchcase(path, rule["match"]):
                kind = rule["update"]
                train[path] = kind == "full" or (kind == "bias_only" and path.endswith(".bias"))
    for path in paths:
        if train[path] and path.endswith(".weight") and path[:-6] + "bias" in train:
            train[path[:-6] + "bias"] = True
    for path, p in paths.items():
        p.requires_grad_(train[path])
    return sum(train.values())


def main():
    p = argparse.ArgumentParser()
    for name, default in [("layers", 6), ("width", 384), ("heads", 6), ("seq", 256), ("batch", 8),
                          ("steps", 10), ("threads", 2), ("vocab", 256)]:
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--data", required=True)
    p.add_argument("--clip", type=float, default=1.0, help="0: no clipping")
    p.add_argument("--sparse-update", default="", help="strata's JSON rules: train only those")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tokens = torch.tensor(list(open(a.data, "rb").read()), dtype=torch.long)
    model = Gpt(a.vocab, a.seq, a.layers, a.width, a.heads)
    trained = None
    if a.sparse_update:
        trained = apply_sparse_update(model, json.load(open(a.sparse_update)))
    decay = [p for p in model.parameters() if p.dim() >= 2 and p.requires_grad]
    other = [p for p in model.parameters() if p.dim() < 2 and p.requires_grad]
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
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], a.clip)
        opt.step()
        times.append((time.perf_counter() - t0) * 1e3)
        losses.append(loss.item())
    print(json.dumps({"step_ms": times, "loss": losses, "torch": torch.__version__,
                      "fused_adamw": fused, "trained_tensors": trained,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
