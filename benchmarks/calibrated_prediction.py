"""Issue 12, validation: the closed form's predicted MSE of the network's restorations, Gaussian (Wiener) denoiser model
against the calibrated one, next to the MSE measured by ``evaluate`` on held-out patches (heuristic schedules).

    python benchmarks/calibrated_prediction.py --cells benchmarks/results/evaluate_real_prior20/cells.csv \
        --calibration checkpoints/patches32.ckpt.calibration-network-3cbc0803394f.pt \
        --output benchmarks/results/calibrated_prediction20.json

For every heuristic cell of ``--cells`` (an evaluate run on ``--ckpt``), both models' predicted per-pixel MSE in
[0, 1] units and the z-score ``(measured - predicted) / SE(measured)``.
"""

from __future__ import annotations

import argparse
import csv
import json

import torch

from zsguide.checkpoint import load_gaussian_prior
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler
from zsguide.spectral.criteria import Criteria
from zsguide.spectral.denoiser_model import load_calibration
from zsguide.spectral.problem import problem_for
from zsguide.spectral.transfer import transfer

UNIT = 4.0  # network units -> [0, 1] pixel units (squared)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="checkpoints/patches32.ckpt")
    ap.add_argument("--cells", required=True)
    ap.add_argument("--calibration", required=True)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    prior = load_gaussian_prior(args.ckpt)
    model = load_calibration(args.calibration, prior.surrogate)
    rows = [r for r in csv.DictReader(open(args.cells)) if r["params"] == "heuristic" and r["status"] == "complete"]
    out = []
    for r in rows:
        task, method, steps, sigma_y = r["task"], r["sampler"], int(r["steps"]), float(r["sigma_y"])
        op = make_operator(task, tuple(prior.meta["image_shape"]), 0, [0])
        params = get_sampler(method).heuristic(task, steps, prior.schedule)
        measured, se = float(r["mse_mean"]), float(r["mse_se"])
        entry = {"sampler": method, "task": task, "steps": steps, "sigma_y": sigma_y, "n": int(r["n"]),
                 "measured_mse": measured, "measured_se": se}
        for label, den in (("gaussian", None), ("calibrated", model)):
            p = problem_for(prior.surrogate, op, 2 * sigma_y, denoiser=den)
            pred = float(Criteria(p)(transfer(method, p, params, prior.schedule.alphas_cumprod))["mse"]) / UNIT
            entry[f"{label}_mse"], entry[f"{label}_z"] = pred, (measured - pred) / se
        out.append(entry)
        print(f"{method:8s} {task:16s} measured {measured:.5f} +- {se:.5f}  gaussian {entry['gaussian_mse']:.5f} "
              f"(z {entry['gaussian_z']:+6.1f})  calibrated {entry['calibrated_mse']:.5f} (z {entry['calibrated_z']:+6.1f})",
              flush=True)
    with open(args.output, "w") as f:
        json.dump({"ckpt": args.ckpt, "cells": args.cells, "calibration": args.calibration, "rows": out}, f, indent=1)


if __name__ == "__main__":
    main()
