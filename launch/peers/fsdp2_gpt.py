"""The PyTorch 2.x FSDP2 peer of strata-gpt's ZeRO stage 3 for launch/bench-zero: the same GPT as
launch/bench-gpt's peer (tests/benchmarks/graph/gpt_train_torch.py: GPT-2 architecture, tied
embedding, GELU tanh, no dropout, fused attention), each block and the root wrapped in
`fully_shard` (parameters sharded over the ranks, all-gathered before each block's forward and
backward, gradients reduce-scattered), gloo, AdamW (0.9, 0.95, eps 1e-8, weight decay 0.1 on
tensors with 2+ dimensions), global-norm clipping at 1.0, float32 on the CPU.

    torchrun --standalone --nproc-per-node 2 launch/peers/fsdp2_gpt.py --data tokens.txt \
        --layers 6 --width 384 --heads 6 --seq 256 --batch 8 --steps 8 --threads 1

--batch is the global batch: each rank trains rows [rank * B / N, (rank + 1) * B / N) of every
batch of llm.c's sequential batches, as strata-gpt's ranks do. Rank 0 prints one JSON line: its
step times in milliseconds (every step; the caller leaves out the warm-up), the losses, the torch
version and whether AdamW ran fused. Needs PyTorch 2.6 or later (torch.distributed.fsdp.fully_shard).
"""
import argparse
import json
import os
import pathlib
import sys
import time

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "benchmarks" / "graph"))
from gpt_train_torch import Gpt  # noqa: E402  the model launch/bench-gpt measures


def init_like_strata(model, layers):
    """GPT-2's initialization, as strata's Gpt does (graph/models/gpt.h): N(0, 0.02) weights and
    embeddings, N(0, 0.02 / sqrt(2 layers)) for the residual projections, zero biases, unit
    LayerNorms; so that both sides start from a loss near ln(vocab)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("ln_") or ".ln_" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                residual = name.endswith(("c_proj.weight", "mlp_proj.weight"))
                p.normal_(0.0, 0.02 / (2 * layers) ** 0.5 if residual else 0.02)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    for name, default in [("layers", 6), ("width", 384), ("heads", 6), ("seq", 256), ("batch", 8),
                          ("steps", 8), ("threads", 1), ("vocab", 256)]:
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--data", required=True, help="a file of bytes, the tokens (vocabulary 256)")
    a = p.parse_args()
    if "RANK" not in os.environ:
        sys.exit("fsdp2_gpt.py: no RANK in the environment; start it with torchrun --nproc-per-node N")
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if a.batch % world != 0:
        sys.exit(f"fsdp2_gpt.py: --batch {a.batch} does not split among {world} ranks")
    torch.manual_seed(0)  # the same initial model on every rank, as fully_shard expects
    tokens = torch.tensor(list(pathlib.Path(a.data).read_bytes()), dtype=torch.long)
    model = Gpt(a.vocab, a.seq, a.layers, a.width, a.heads)
    init_like_strata(model, a.layers)
    for block in model.h:
        fully_shard(block)
    fully_shard(model)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    n, bt = len(tokens), a.batch * a.seq
    rows = slice(rank * a.batch // world, (rank + 1) * a.batch // world)
    times, losses = [], []
    for s in range(a.steps):
        start = (s * bt) % (n - bt - 1)
        chunk = tokens[start:start + bt + 1]
        x, y = chunk[:-1].view(a.batch, a.seq)[rows], chunk[1:].view(a.batch, a.seq)[rows]
        t0 = time.perf_counter()
        loss = model(x, y)  # this rank's mean; FSDP2's reduce-scatter averages over the ranks
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append((time.perf_counter() - t0) * 1e3)
        losses.append(loss.item())
    if rank == 0:
        print(json.dumps({"step_ms": times, "loss": losses, "torch": torch.__version__,
                          "world_size": world, "fused_adamw": True}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
