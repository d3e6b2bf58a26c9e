"""One peer's CPU AdamW over one flat fp32 parameter of --params elements; prints one JSON line with
the same fields as strata-bench-adam (params_per_s over the median step, step_ms, ...).

    python3 adamw_peers.py --impl deepspeed --params 67108864 --threads 2 --steps 10
    python3 adamw_peers.py --impl torch --params 67108864 --threads 2

--impl deepspeed: deepspeed.ops.adam.DeepSpeedCPUAdam(adamw_mode=True), whose C++ op DeepSpeed
builds on first use (DS_BUILD_OPS=0; needs ninja and g++) and caches. --impl torch:
torch.optim.AdamW(fused=True), or foreach=True where this torch refuses fused on CPU (the JSON
says which). Hyper-parameters as strata-bench-adam: lr 1e-3, betas (0.9, 0.999), eps 1e-8,
weight decay 0.01; one untimed step, then --steps timed steps (step counts 2, 3, ...).
Run by launch/bench-adam in its virtual environment.
"""
import argparse
import json
import statistics
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--impl", choices=["deepspeed", "torch"], required=True)
    p.add_argument("--params", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    n = a.params
    # The same values as strata-bench-adam: small parameters, gradients of order 1e-3.
    idx = torch.arange(n, dtype=torch.int64)
    h = (idx * 2654435761) & 0xFFFFFFFF
    param = torch.nn.Parameter(((h >> 8).to(torch.float32) * 2.0**-24 - 0.5) * 0.04)
    param.grad = (((h >> 4) & 0xFFFF).to(torch.float32) * 2.0**-16 - 0.5) * 2e-3
    del idx, h
    hyper = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    info = {"impl": a.impl, "torch": torch.__version__}
    if a.impl == "deepspeed":
        import deepspeed
        from deepspeed.ops.adam import DeepSpeedCPUAdam
        opt = DeepSpeedCPUAdam([param], adamw_mode=True, **hyper)
        info["deepspeed"] = deepspeed.__version__
    else:
        try:
            opt = torch.optim.AdamW([param], fused=True, **hyper)
            opt.step()  # a refusal of fused on CPU shows here at the latest
            info["variant"] = "fused"
        except (RuntimeError, ValueError) as e:
            opt = torch.optim.AdamW([param], foreach=True, **hyper)
            info["variant"] = f"foreach (fused refused: {str(e).splitlines()[0]})"
    if a.impl == "deepspeed" or info.get("variant") != "fused":
        opt.step()  # the untimed warm-up step
    ms = []
    with torch.no_grad():
        for _ in range(a.steps):
            start = time.perf_counter()
            opt.step()
            ms.append((time.perf_counter() - start) * 1e3)
    median = statistics.median(ms)
    print(json.dumps({**info, "params": n, "threads": torch.get_num_threads(), "steps": a.steps,
                      "median_step_ms": median, "params_per_s": n / (median * 1e-3),
                      "gb_per_s": 28.0 * n / (median * 1e-3) / 1e9, "step_ms": ms}))


if __name__ == "__main__":
    main()
