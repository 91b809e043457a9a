"""Issue 12, validation: the closed form's predicted MSE of the network's restorations, Gaussian (Wiener) denoiser model
against the calibrated one, next to the MSE measured by ``evaluate`` on held-out patches (heuristic schedules).

    python benchmarks/calibrated_prediction.py --cells benchmarks/results/evaluate_real_prior20/cells.csv \
        --calibration checkpoints/patches32.ckpt.calibration-network-3cbc0803394f.pt \
        --output benchmarks/results/calibrated_prediction20.json

For every heuristic cell of ``--cells`` (an evaluate run on ``--ckpt``), both models' predicted per-pixel MSE in
[0, 1] units and the z-score ``(measured - predicted) / SE(measured)``. The measured MSE is the *unclipped* one
(``mse_unclipped``: the closed forms predict the output as computed, before clipping to [0, 1]); the clipped one is
recorded beside it (``measured_mse_clipped``). Runs made before ``mse_unclipped`` (evaluate's RESULTS_VERSION 1) are
refused: rerun them.

With ``--run DIR`` (that evaluate run's output folder, for each cell's schedule in ``cells/<folder>/cell.json``), also
every designed cell: both models' predicted change of the MSE from the heuristic, ``pred(design) - pred(heuristic)``,
against the measured paired difference ``d_mse`` (z with its paired SE): does the model predict what a design does
to the network, not only where the heuristic lands?

    python benchmarks/calibrated_prediction.py --cells runs/evaluate/objectives20/cells.csv \
        --run runs/evaluate/objectives20 --calibration checkpoints/patches32.ckpt.calibration-network-3cbc0803394f.pt \
        --output benchmarks/results/calibrated_prediction_designs20.json
"""

from __future__ import annotations

import argparse
import csv
import json

from zsguide.checkpoint import load_gaussian_prior
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler
from zsguide.samplers.base import ParamSchedule
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
    ap.add_argument("--run", default=None, help="the evaluate output folder: also predict every designed cell")
    args = ap.parse_args()
    prior = load_gaussian_prior(args.ckpt)
    model = load_calibration(args.calibration, prior.surrogate)
    every = [r for r in csv.DictReader(open(args.cells)) if r["status"] == "complete"]
    rows = [r for r in every if r["params"] == "heuristic"]
    out = []
    predicted_h = {}
    for r in rows:
        task, method, steps, sigma_y = r["task"], r["sampler"], int(r["steps"]), float(r["sigma_y"])
        op = make_operator(task, tuple(prior.meta["image_shape"]), 0, [0])
        params = get_sampler(method).heuristic(task, steps, prior.schedule)
        if not r.get("mse_unclipped_mean"):
            raise SystemExit(f"{args.cells} has no mse_unclipped (an evaluate run before RESULTS_VERSION 2): rerun it")
        measured, se = float(r["mse_unclipped_mean"]), float(r["mse_unclipped_se"])
        entry = {
            "sampler": method,
            "task": task,
            "steps": steps,
            "sigma_y": sigma_y,
            "n": int(r["n"]),
            "measured_mse": measured,
            "measured_se": se,
            "measured_mse_clipped": float(r["mse_mean"]),
        }
        for label, den in (("gaussian", None), ("calibrated", model)):
            p = problem_for(prior.surrogate, op, 2 * sigma_y, denoiser=den)
            pred = float(Criteria(p)(transfer(method, p, params, prior.schedule.alphas_cumprod))["mse"]) / UNIT
            entry[f"{label}_mse"], entry[f"{label}_z"] = pred, (measured - pred) / se
        out.append(entry)
        predicted_h[(method, task, steps, sigma_y)] = {k: entry[f"{k}_mse"] for k in ("gaussian", "calibrated")}
        print(
            f"{method:8s} {task:16s} measured {measured:.5f} +- {se:.5f}  gaussian {entry['gaussian_mse']:.5f} "
            f"(z {entry['gaussian_z']:+6.1f})  calibrated {entry['calibrated_mse']:.5f} (z {entry['calibrated_z']:+6.1f})",
            flush=True,
        )
    designs = []
    for r in every if args.run else []:
        key = (r["sampler"], r["task"], int(r["steps"]), float(r["sigma_y"]))
        if r["params"] == "heuristic" or key not in predicted_h or not r.get("d_mse_unclipped_se"):
            continue
        cell = json.load(open(f"{args.run}/cells/{r['folder']}/cell.json"))
        params = ParamSchedule.from_dict(cell["settings"]["params"])
        op = make_operator(r["task"], tuple(prior.meta["image_shape"]), 0, [0])
        d, se = float(r["d_mse_unclipped"]), float(r["d_mse_unclipped_se"])
        entry = {
            "sampler": key[0],
            "task": key[1],
            "steps": key[2],
            "params": r["params"],
            "measured_d_mse": d,
            "measured_d_se": se,
            "measured_d_mse_clipped": float(r["d_mse"]),
        }
        for label, den in (("gaussian", None), ("calibrated", model)):
            p = problem_for(prior.surrogate, op, 2 * key[3], denoiser=den)
            pred = float(Criteria(p)(transfer(key[0], p, params, prior.schedule.alphas_cumprod))["mse"]) / UNIT
            dp = pred - predicted_h[key][label]
            entry[f"{label}_d_mse"], entry[f"{label}_z"] = dp, (d - dp) / se if se > 0 else None
        designs.append(entry)
        print(
            f"{key[0]:8s} {key[1]:16s} {r['params']:28s} measured dMSE {d:+.5f} +- {se:.5f}  gaussian "
            f"{entry['gaussian_d_mse']:+.5f}  calibrated {entry['calibrated_d_mse']:+.5f}",
            flush=True,
        )
    with open(args.output, "w") as f:
        json.dump(
            {"ckpt": args.ckpt, "cells": args.cells, "calibration": args.calibration, "rows": out, "designs": designs},
            f,
            indent=1,
        )


if __name__ == "__main__":
    main()
