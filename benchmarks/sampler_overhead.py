"""Per-step cost of each sampler against a bare loop of the same denoiser calls (issue: overhead ratio <= 1.10).

The denoiser is the shipped checkpoint's EMA network (or a fresh UNet of the patches config with --fresh); the bare
loop calls it the same number of times on the same batch, forward only for DDRM / DDNM+ / DiffPIR / oracle and forward
+ backward (a vector-Jacobian product) for DPS and PiGDM, which differentiate through it.

    python benchmarks/sampler_overhead.py --ckpt checkpoints/patches32.ckpt --batch 16 --steps 20 --out benchmarks/results/sampler_overhead.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from zsguide.checkpoint import load_score_module
from zsguide.operators import make_operator
from zsguide.samplers import SAMPLERS


def bare_loop(denoiser, x, taus, backward: bool) -> None:
    for t in taus:
        if backward:
            xg = x.detach().requires_grad_(True)
            out = denoiser.x0(xg, t)
            torch.autograd.grad(out, xg, grad_outputs=torch.ones_like(out))
        else:
            with torch.no_grad():
                denoiser.x0(x, t)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="checkpoints/patches32.ckpt")
    ap.add_argument("--task", default="sr4")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samplers", nargs="*", default=sorted(SAMPLERS))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    module, meta = load_score_module(args.ckpt)
    den = module.network_denoiser()
    shape = tuple(meta["image_shape"])
    idx = list(range(args.batch))
    op = make_operator(args.task, shape, 0, idx)
    x = torch.rand(args.batch, *shape) * 2 - 1
    y = op.measure(x, 0.02, op.noise_for(0, idx))
    rows = []
    for name in args.samplers:
        s = SAMPLERS[name]
        params = s.heuristic(args.task, args.steps, module.schedule)
        t_sampler = best_of(lambda: s.run(den, op, y, 0.02, params, 0, idx, surrogate=module.surrogate), args.repeats)
        xt = torch.randn(args.batch, *shape)
        t_bare = best_of(lambda: bare_loop(den, xt, params.timesteps, s.needs_grad), args.repeats)
        rows.append(
            {
                "sampler": name,
                "per_step_ms": 1e3 * t_sampler / args.steps,
                "bare_per_step_ms": 1e3 * t_bare / args.steps,
                "overhead_ratio": t_sampler / t_bare,
                "differentiates": s.needs_grad,
            }
        )
        print(
            f"{name:8s} {rows[-1]['per_step_ms']:8.1f} ms/step  bare {rows[-1]['bare_per_step_ms']:8.1f} ms/step  "
            f"ratio {rows[-1]['overhead_ratio']:.3f}"
        )
    result = {
        "task": args.task,
        "batch": args.batch,
        "steps": args.steps,
        "image_shape": list(shape),
        "checkpoint": args.ckpt,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
