"""What the spectral engine's reductions for large images cost in accuracy: closed-form criteria of the heuristic and
designed schedules on the reduced problem against the exact (full) problem, at one image size.

- blur: the designer runs on ``BlockProblem.grouped()`` (blocks of nearly equal (lambda, s) merged); the criteria
  analyze reports are exact. Measured: grouped against exact criteria, and the design's exact gain.
- super-resolution: above 32 x 32 images the problem is a stratified random sample of the alias blocks
  (``problem_for``); analyze reports the sample's criteria. Measured: sample against exact (the full problem takes
  about 40 s per evaluation at 256 x 256 x4 on this CPU).

    python benchmarks/spectral_reduction.py --ckpt PRIOR_256.ckpt --steps 100 --out benchmarks/results/spectral_reduction_256.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from zsguide.checkpoint import load_gaussian_prior
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler
from zsguide.spectral.criteria import Criteria
from zsguide.spectral.problem import problem_for
from zsguide.spectral.service import designed_schedule
from zsguide.spectral.transfer import transfer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--sigma_y", type=float, default=0.02)
    ap.add_argument("--samplers", nargs="*", default=["ddrm", "ddnm", "pigdm", "dps", "diffpir"])
    ap.add_argument("--tasks", nargs="*", default=["deblur_gaussian", "sr4"])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    prior = load_gaussian_prior(args.ckpt)
    shape, abar, sigma = tuple(prior.surrogate.shape), prior.schedule.alphas_cumprod, 2 * args.sigma_y
    record = {"image_shape": list(shape), "steps": args.steps, "sigma_y": args.sigma_y, "rows": []}
    for task in args.tasks:
        op = make_operator(task, shape, 0, [0])
        exact_problem = problem_for(prior.surrogate, op, sigma, max_fourier=10**9)
        reduced = exact_problem.grouped() if task.startswith("deblur") else problem_for(prior.surrogate, op, sigma)
        exact_c, reduced_c = Criteria(exact_problem), Criteria(reduced)
        for name in args.samplers:
            heur = get_sampler(name).heuristic(task, args.steps, prior.schedule)
            design = designed_schedule(prior.surrogate, op, sigma, prior.schedule, heur, task, trust=2.0).params
            for label, params in (("heuristic", heur), ("spectral", design)):
                t0 = time.perf_counter()
                e = {k: float(v) for k, v in exact_c(transfer(name, exact_problem, params, abar)).items()}
                t1 = time.perf_counter()
                r = {k: float(v) for k, v in reduced_c(transfer(name, reduced, params, abar)).items()}
                t2 = time.perf_counter()
                row = {
                    "task": task,
                    "sampler": name,
                    "schedule": label,
                    "exact": e,
                    "reduced": r,
                    "relative_difference": {k: r[k] / e[k] - 1 for k in e},
                    "exact_s": t1 - t0,
                    "reduced_s": t2 - t1,
                    "blocks": [exact_problem.num_blocks, reduced.num_blocks],
                }
                record["rows"].append(row)
                print(
                    task,
                    name,
                    label,
                    {k: f"{v:+.2e}" for k, v in row["relative_difference"].items()},
                    f"exact {t1 - t0:.1f} s, reduced {t2 - t1:.2f} s",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
