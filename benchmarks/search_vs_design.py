"""Designed against searched (issue 26; docs/benchmarks.md "Designed against searched"): the searches behind
configs/evaluate/search_vs_design20.yaml.

For every designable sampler x {deblur_gaussian, sr4, inpaint_random} at 20 steps on the shipped prior, sigma_y 0.02,
each validation draw (6 images of the validation split) and each space (peers, design): one 30-trial search
(``python -m zsguide search``, run in this process), recording the best of its first 10 and of all 30 trials
(``params_at10.json``, ``params_at30.json``: the best of the first 10 trials of a 30-trial study is what a 10-trial
search with the same seed returns, study.py). Finished searches are skipped, an interrupted one resumes.

    python benchmarks/search_vs_design.py [--draws 0 1 2] [--root runs/search/compare]

Then ``python -m zsguide evaluate --config configs/evaluate/search_vs_design20.yaml`` scores every result on the
held-out test images, and ``python benchmarks/search_vs_design.py --summarise`` writes the overfitting table
(validation against test PSNR) and the cost figure from both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SAMPLERS = ("ddrm", "ddnm", "pigdm", "dps", "diffpir", "reddiff_sgd", "daps_fast", "daps")
TASKS = ("deblur_gaussian", "sr4", "inpaint_random")
SPACES = ("peers", "design")
STEPS, SIGMA_Y, TRIALS, BUDGETS, NUM_IMAGES = 20, 0.02, 30, (10, 30), 6


def folder(root: Path, draw: int, sampler: str, task: str, space: str) -> Path:
    return root / f"draw{draw}" / f"{sampler}_{task}_{STEPS}steps_sigma{SIGMA_Y:g}_{space}"


def run_searches(root: Path, draws: list[int], ckpt: str) -> None:
    from zsguide.cli import main

    for draw in draws:
        for sampler in SAMPLERS:
            for task in TASKS:
                for space in SPACES:
                    out = folder(root, draw, sampler, task, space)
                    if (out / f"params_at{TRIALS}.json").is_file():
                        continue
                    t0 = time.perf_counter()
                    argv = ["search", "--ckpt_path", ckpt, "--sampler", sampler, "--task", task]
                    argv += ["--steps", str(STEPS), "--sigma_y", str(SIGMA_Y), "--space", space]
                    argv += ["--trials", str(TRIALS), "--record_at", json.dumps(list(BUDGETS))]
                    argv += ["--num_images", str(NUM_IMAGES), "--draw", str(draw), "--output", str(out)]
                    argv += ["--progress", "false", "--trainer.accelerator", "cpu"]
                    rc = main(argv)
                    print(f"{out.name} draw {draw}: rc {rc}, {time.perf_counter() - t0:.0f} s", flush=True)
                    if rc in (130, 143):  # stopped by SIGINT / SIGTERM: the study keeps its trials; stop here
                        return


def summarise(root: Path, evaluation: Path, out: Path) -> None:
    """The overfitting table: per (sampler, task, space, budget, draw) the validation PSNR the search saw against the
    test PSNR of the same schedule (cells.csv of the evaluation)."""
    import csv

    rows = list(csv.DictReader(open(evaluation / "cells.csv")))
    test = {(r["sampler"], r["task"], r["params"]): r for r in rows}
    table = []
    for draw in sorted(int(p.name[4:]) for p in root.glob("draw*")):
        for sampler in SAMPLERS:
            for task in TASKS:
                for space in SPACES:
                    f = folder(root, draw, sampler, task, space) / "search.json"
                    if not f.is_file():
                        continue
                    for k in BUDGETS:
                        label = f"{'searched' if space == 'peers' else 'searched_design'}{k}_d{draw}"
                        cell = test.get((sampler, task, label))
                        if cell is None:
                            continue
                        p = json.loads((f.parent / f"params_at{k}.json").read_text())
                        table.append(
                            {
                                "sampler": sampler,
                                "task": task,
                                "space": space,
                                "budget": k,
                                "draw": draw,
                                "validation_psnr": p["provenance"]["best_value"],
                                "test_psnr": float(cell["psnr_mean"]),
                                "network_calls": p["provenance"]["spent"]["network_calls"],
                                "vjps": p["provenance"]["spent"]["vjps"],
                                "seconds": p["provenance"]["spent"]["seconds"],
                            }
                        )
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "search_vs_design.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    print(f"wrote {out / 'search_vs_design.csv'} ({len(table)} rows)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="runs/search/compare")
    ap.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ckpt", default="checkpoints/patches32.ckpt")
    ap.add_argument("--summarise", action="store_true")
    ap.add_argument("--evaluation", default="runs/evaluate/search_vs_design20")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    if args.summarise:
        summarise(Path(args.root), Path(args.evaluation), Path(args.out))
    else:
        run_searches(Path(args.root), args.draws, args.ckpt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
