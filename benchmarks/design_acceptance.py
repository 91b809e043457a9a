"""Acceptance of the designer: heuristic against designed averaged W2 (closed form) on the Gaussian testbed, for
every sampler x task x step count.

Prior: the `gaussian` data set's true spectrum at 32x32x3 (amplitude 0.3, slope 2, f0 1/32); operators: the task
defaults (inpaint_random is solved on its exact 16x16 window marginal, problem.py); sigma_y 0.05 in pixel units
(0.1 in network units). For each cell: avg W2^2 and MSE per pixel (network units) of the heuristic and of the designed
schedule, and the design time. Designs at increasing step counts warm-start from the previous one (the cache).

    python benchmarks/design_acceptance.py --out benchmarks/results/design_acceptance.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from zsguide.data.gaussian import gaussian_field_spectrum
from zsguide.diffusion.schedule import VPSchedule
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler
from zsguide.spectral.criteria import Criteria
from zsguide.spectral.problem import problem_for
from zsguide.spectral.service import designed_schedule
from zsguide.surrogate import GaussianSurrogate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="*", default=[10, 20, 50, 100])
    ap.add_argument("--samplers", nargs="*", default=["ddrm", "ddnm", "pigdm", "dps", "diffpir"])
    ap.add_argument("--tasks", nargs="*", default=["deblur_gaussian", "sr4", "inpaint_random"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("ZSGUIDE_CACHE", tempfile.mkdtemp(prefix="zsguide-acceptance-"))
    sched = VPSchedule()
    sur = GaussianSurrogate(3, 32, 32)
    sur.set(torch.zeros(3, dtype=torch.float64), gaussian_field_spectrum(3, 32, 0.3, 2.0, 1 / 32))
    previous = json.loads(Path(args.out).read_text())["rows"] if args.out and Path(args.out).is_file() else []
    done = {(r["task"], r["sampler"], r["steps"]) for r in previous}
    rows = list(previous)
    for task in args.tasks:
        op = make_operator(task, sur.shape, 0, [0])
        prob = problem_for(sur, op, 0.1)
        crit = Criteria(prob)
        for name in args.samplers:
            for steps in args.steps:
                if (task, name, steps) in done:
                    continue
                h = get_sampler(name).heuristic(task, steps, sched)
                t0 = time.perf_counter()
                r = designed_schedule(sur, op, 0.1, sched, h, task, problem=prob, criteria=crit)
                rows.append(
                    {
                        "task": task,
                        "sampler": name,
                        "steps": steps,
                        "heuristic": r.heuristic,
                        "designed": r.designed,
                        "reduction_w2": 1 - (r.designed["avg_w2"] / r.heuristic["avg_w2"]) ** 0.5,
                        "design_seconds": time.perf_counter() - t0,
                        "reduction_note": prob.note,
                    }
                )
                print(
                    f"{task:15s} {name:8s} {steps:4d}  avgW2^2 {r.heuristic['avg_w2']:.3e} -> "
                    f"{r.designed['avg_w2']:.3e} (W2 -{100 * rows[-1]['reduction_w2']:5.1f}%)  mse "
                    f"{r.heuristic['mse']:.3e} -> {r.designed['mse']:.3e}  {rows[-1]['design_seconds']:.1f}s",
                    flush=True,
                )
                if args.out:
                    med = statistics.median(r["reduction_w2"] for r in rows)
                    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.out).write_text(
                        json.dumps(
                            {"sigma_y": 0.05, "image_shape": [3, 32, 32], "rows": rows, "median_reduction_w2": med},
                            indent=2,
                        )
                    )
    print(f"median reduction of avg W2: {100 * statistics.median(r['reduction_w2'] for r in rows):.1f}%")


if __name__ == "__main__":
    main()
