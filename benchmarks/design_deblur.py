"""Heuristic against designed averaged W2 (closed form) on the Gaussian testbed, for Gaussian deblurring.

Prior: the `gaussian` data set's true spectrum at 32x32x3 (amplitude 0.3, slope 2, f0 1/32); operator: the default
`deblur_gaussian` (9x9, sigma 1.5); sigma_y 0.05 in pixel units (0.1 in network units). For each sampler and step
count: avg W2^2 and MSE per pixel (network units) of the heuristic and of the designed schedule, and the design time.

    python benchmarks/design_deblur.py --out benchmarks/results/design_deblur.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from zsguide.data.gaussian import gaussian_field_spectrum
from zsguide.diffusion.schedule import VPSchedule
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler
from zsguide.spectral.design import design_diagonal
from zsguide.spectral.diagonal import DiagonalProblem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="*", default=[10, 20, 50, 100])
    ap.add_argument("--samplers", nargs="*", default=["ddrm", "ddnm", "pigdm", "diffpir"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sched = VPSchedule()
    lam = gaussian_field_spectrum(3, 32, 0.3, 2.0, 1 / 32)
    prob = DiagonalProblem.from_operator(lam, make_operator("deblur_gaussian", (3, 32, 32), 0, [0]), 0.1)
    rows = []
    for name in args.samplers:
        for steps in args.steps:
            h = get_sampler(name).heuristic("deblur_gaussian", steps, sched)
            t0 = time.perf_counter()
            r = design_diagonal(name, prob, h, sched.alphas_cumprod)
            rows.append({"sampler": name, "steps": steps, "heuristic": r.heuristic, "designed": r.designed,
                         "reduction": 1 - r.designed["avg_w2"] / r.heuristic["avg_w2"],
                         "design_seconds": time.perf_counter() - t0})
            print(f"{name:8s} {steps:4d}  avgW2^2 {r.heuristic['avg_w2']:.3e} -> {r.designed['avg_w2']:.3e} "
                  f"({100 * rows[-1]['reduction']:5.1f}%)  mse {r.heuristic['mse']:.3e} -> {r.designed['mse']:.3e}  "
                  f"{rows[-1]['design_seconds']:.1f}s")
    med = statistics.median(r["reduction"] for r in rows)
    print(f"median reduction of avg W2^2: {100 * med:.1f}%")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"task": "deblur_gaussian", "sigma_y": 0.05, "image_shape": [3, 32, 32],
                                              "rows": rows, "median_reduction": med}, indent=2))


if __name__ == "__main__":
    main()
