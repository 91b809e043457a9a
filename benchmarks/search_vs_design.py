"""Designed against searched (issue 26; docs/benchmarks.md "Designed against searched"): the searches behind
configs/evaluate/search_vs_design20.yaml.

For every designable sampler x {deblur_gaussian, sr4, inpaint_random} at 20 steps on the shipped prior, sigma_y 0.02,
each validation draw (6 images of the validation split) and each space (peers, design): one 30-trial search
(``python -m zsguide search``, run in this process), recording the best of its first 10 and of all 30 trials
(``params_at10.json``, ``params_at30.json``: the best of the first 10 trials of a 30-trial study is what a 10-trial
search with the same seed returns, study.py). ``daps`` (five network calls a level) is searched on the first draw only;
``daps_fast``, the same sampler with one call a level, is repeated over the draws. Finished searches are skipped, an
interrupted one resumes.

    python benchmarks/search_vs_design.py [--draws 0 1 2] [--root runs/search/compare]

Then ``python -m zsguide evaluate --config configs/evaluate/search_vs_design20.yaml`` (and
``search_vs_design20_daps.yaml``) scores every result on the held-out test images, and ``python benchmarks/search_vs_design.py --summarise`` writes the overfitting table
(validation against test PSNR) and the cost figure from both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SAMPLERS = ("ddrm", "ddnm", "pigdm", "dps", "diffpir", "reddiff_sgd", "daps_fast", "daps")
FIRST_DRAW_ONLY = ("daps",)  # 5 network calls a level: its searches cost 5x; repeated over draws by daps_fast
TASKS = ("deblur_gaussian", "sr4", "inpaint_random")
SPACES = ("peers", "design")
STEPS, SIGMA_Y, TRIALS, BUDGETS, NUM_IMAGES = 20, 0.02, 30, (10, 30), 6


def folder(root: Path, draw: int, sampler: str, task: str, space: str) -> Path:
    return root / f"draw{draw}" / f"{sampler}_{task}_{STEPS}steps_sigma{SIGMA_Y:g}_{space}"


def run_searches(root: Path, draws: list[int], ckpt: str) -> None:
    from zsguide.cli import main

    for draw in draws:
        for sampler in SAMPLERS:
            if draw != draws[0] and sampler in FIRST_DRAW_ONLY:
                continue
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


SOURCES = ("spectral", "spectral_mse", "spectral_perception", "spectral_pareto")
SEARCHED = tuple(f"{name}{k}" for name in ("searched", "searched_design") for k in BUDGETS)


def _validation_heuristic(root: Path, draws: list[int], ckpt: str) -> dict:
    """The heuristic's mean validation PSNR per (sampler, task, draw): what a search's best is compared with."""
    import zsguide
    from zsguide.search import validation_images

    prior = zsguide.load_prior(ckpt)
    out = {}
    for draw in draws:
        val = validation_images(prior.meta, prior.image_shape, NUM_IMAGES, draw)
        for sampler in SAMPLERS:
            for task in TASKS:
                m = zsguide.measure(val.images, task, SIGMA_Y, seed=0, indices=val.indices)
                r = zsguide.restore(prior, m, sampler, steps=STEPS)
                out[(sampler, task, draw)] = float(zsguide.image_metrics(r.images, val.images)["psnr"].mean())
    return out


def _design_seconds(ckpt: str) -> dict:
    """Seconds of each (sampler, task) default design from a cold design cache (the spectral source's tuning cost;
    no network call)."""
    import os
    import tempfile

    import zsguide

    prior = zsguide.load_prior(ckpt)
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        old = os.environ.get("ZSGUIDE_CACHE")
        os.environ["ZSGUIDE_CACHE"] = cache
        try:
            for sampler in SAMPLERS:
                for task in TASKS:
                    t0 = time.perf_counter()
                    zsguide.design(prior, task, sampler, steps=STEPS, sigma_y=SIGMA_Y)
                    out[(sampler, task)] = time.perf_counter() - t0
        finally:
            if old is None:
                del os.environ["ZSGUIDE_CACHE"]
            else:
                os.environ["ZSGUIDE_CACHE"] = old
    return out


def summarise(root: Path, evaluation: list[Path], out: Path, ckpt: str) -> None:
    """From the searches and the evaluation: the overfitting table (validation gain against test gain over the
    heuristic, per search), the per-source counts (better / worse / within noise beyond 2 paired SEs) with the tuning
    cost, and the figure (test PSNR against tuning network calls)."""
    import csv

    from zsguide.evaluation.significance import VERDICTS, metric_verdict

    cells = [c for e in evaluation for c in json.loads((e / "cells.json").read_text())["cells"]]
    test = {(c["sampler"], c["task"], c["params"]): c for c in cells}
    draws = sorted(int(p.name[4:]) for p in root.glob("draw*"))
    val_h = _validation_heuristic(root, draws, ckpt)
    design_s = _design_seconds(ckpt)
    rows = []
    for draw in draws:
        for sampler in SAMPLERS:
            for task in TASKS:
                for space in SPACES:
                    for k in BUDGETS:
                        f = folder(root, draw, sampler, task, space) / f"params_at{k}.json"
                        label = f"{'searched' if space == 'peers' else 'searched_design'}{k}"
                        cell = test.get((sampler, task, f"{label}_d{draw}"))
                        if not f.is_file() or cell is None:
                            continue
                        prov = json.loads(f.read_text())["provenance"]
                        rows.append(
                            {
                                "sampler": sampler,
                                "task": task,
                                "source": label,
                                "draw": draw,
                                "validation_psnr": prov["best_value"],
                                "validation_gain": prov["best_value"] - val_h[(sampler, task, draw)],
                                "test_psnr": cell["psnr_mean"],
                                "test_gain": cell.get("d_psnr"),
                                "test_gain_se": cell.get("d_psnr_se"),
                                "network_calls": prov["spent"]["network_calls"],
                                "vjps": prov["spent"]["vjps"],
                                "seconds": prov["spent"]["seconds"],
                            }
                        )
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "search_vs_design.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    def mean(values) -> float:
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else float("nan")

    # per source: verdict counts over every (sampler, task, draw) cell, mean ΔPSNR, tuning cost
    table = []
    for source in ("heuristic", *SOURCES, *SEARCHED):
        mine = [c for c in cells if c["params"] == source or c["params"].rsplit("_d", 1)[0] == source]
        if source == "heuristic":
            cost = {"network_calls": 0, "seconds": 0.0}
        elif source in SOURCES:
            cost = {"network_calls": 0, "seconds": mean(design_s.values()) if source == "spectral" else None}
        else:
            spent = [r for r in rows if r["source"] == source]
            cost = {
                "network_calls": mean(r["network_calls"] for r in spent),
                "seconds": mean(r["seconds"] for r in spent),
            }
        entry = {"source": source, "cells": len(mine), **cost}
        for metric in ("psnr", "ssim", "fd"):
            verdicts = [metric_verdict(c, metric) for c in mine]
            entry |= {f"{metric}_{v.replace(' ', '_')}": verdicts.count(v) for v in VERDICTS}
            entry[f"mean_d_{metric}"] = mean(c.get(f"d_{metric}") for c in mine)
        entry["worse_both"] = sum(metric_verdict(c, "psnr") == metric_verdict(c, "fd") == "worse" for c in mine)
        table.append(entry)
    overfit = []
    for source in SEARCHED:
        mine = [r for r in rows if r["source"] == source]
        spread = []
        for sampler in SAMPLERS:
            for task in TASKS:
                t = [r["test_psnr"] for r in mine if (r["sampler"], r["task"]) == (sampler, task)]
                if len(t) > 1:
                    spread.append(max(t) - min(t))
        overfit.append(
            {
                "source": source,
                "searches": len(mine),
                "validation_gain": mean(r["validation_gain"] for r in mine),
                "test_gain": mean(r["test_gain"] for r in mine),
                "test_range_over_draws": mean(spread),
            }
        )
    summary = {
        "sources": table,
        "overfitting": overfit,
        "design_seconds": {f"{s}/{t}": v for (s, t), v in design_s.items()},
        "validation_heuristic_psnr": {f"{s}/{t}/draw{d}": v for (s, t, d), v in val_h.items()},
    }
    (out / "search_vs_design_summary.json").write_text(json.dumps(summary, indent=1))
    _figure(cells, rows, design_s, Path("docs/figures/search_vs_design.png"))
    print(json.dumps({"sources": table, "overfitting": overfit}, indent=1))


def _figure(cells: list[dict], rows: list[dict], design_s: dict, path: Path) -> None:
    """Test PSNR against the tuning network calls, a panel per task, a colour per sampler: solid from the heuristic
    (no calls) through the peers' search at 10 and 30 trials, dashed from the spectral design through the
    design-seeded search; each searched point the mean over the validation draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = {(c["sampler"], c["task"], c["params"]): c["psnr_mean"] for c in cells}
    fig, axes = plt.subplots(1, len(TASKS), figsize=(5 * len(TASKS), 4.2), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, task in zip(axes[0], TASKS):
        for j, sampler in enumerate(SAMPLERS):
            for start, name, style in (("heuristic", "searched", "-"), ("spectral", "searched_design", "--")):
                xs, ys = [0.0], [test.get((sampler, task, start), float("nan"))]
                for k in BUDGETS:
                    pts = [r for r in rows if (r["sampler"], r["task"], r["source"]) == (sampler, task, f"{name}{k}")]
                    if pts:
                        xs.append(sum(r["network_calls"] for r in pts) / len(pts))
                        ys.append(sum(r["test_psnr"] for r in pts) / len(pts))
                ax.plot(xs, ys, style, marker="o" if style == "-" else "*", color=colours(j), ms=4,
                        label=sampler if style == "-" else None)  # fmt: skip
        ax.set_xscale("symlog", linthresh=100)
        ax.set_xlabel("tuning network calls (0: heuristic, o; spectral design, *)")
        ax.set_ylabel("test PSNR (dB, 32 held-out patches)")
        ax.set_title(f"{task}, {STEPS} steps, sigma_y {SIGMA_Y:g}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle("solid: heuristic -> peers' search (10, 30 trials); dashed: spectral design -> design-seeded search",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="runs/search/compare")
    ap.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ckpt", default="checkpoints/patches32.ckpt")
    ap.add_argument("--summarise", action="store_true")
    ap.add_argument(
        "--evaluation", nargs="+", default=["runs/evaluate/search_vs_design20", "runs/evaluate/search_vs_design20_daps"]
    )
    ap.add_argument("--out", default="benchmarks/results/search_vs_design20")
    args = ap.parse_args()
    if args.summarise:
        summarise(Path(args.root), [Path(e) for e in args.evaluation], Path(args.out), args.ckpt)
    else:
        run_searches(Path(args.root), args.draws, args.ckpt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
