"""The report of an evaluation, built from the committed items alone (so it can be rebuilt at any time).

Per cell (cells.csv / cells.json): the number of images and the status (``complete``; ``partial`` while images are
missing; ``failed`` with the sampler's error lines), the mean and standard error (``std(ddof=1) / sqrt(n)``) of PSNR,
SSIM, MSE (and LPIPS), the Frechet spectral distance FD between the restored set and the same clean images with its
paired bootstrap standard error (evaluation/perception.py), FID the same way when Inception weights were given, the
compute time (the sum of the images' shares of their batches' time) and images per second. Against the cell's
heuristic twin (grid.py), on the images both have: the paired differences ``cell - twin`` of PSNR, SSIM, MSE (LPIPS)
with their paired standard errors (the standard error of the per-image differences), and of FD (FID) with the paired
bootstrap standard error (the same images drawn for both restorations and the clean set), and the flag
``worse_both``: lower PSNR and higher FD than the twin. The clean floor: FD between the first N clean images and the
next N, when the test split has 2N.

results.csv holds one row per cell x image with every per-image metric; report.md the tables per task and the
figures (figures.py).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from ...evaluation.metrics import mean_and_se
from ...evaluation.perception import (
    bootstrap_difference_se,
    bootstrap_se,
    frechet_distance_features,
    spectral_features,
)
from ...evaluation.significance import HIGHER_IS_BETTER, metric_verdict
from ...runtime.files import atomic_write_bytes, atomic_write_text, json_safe, write_json
from . import store

PER_IMAGE = ("psnr", "ssim", "mse", "mse_unclipped", "lpips")
COST = ("network_calls", "vjps", "operator_applications")  # per image (samplers/cost.py)


def load_cell(plan, cell) -> dict:
    """The committed items of ``cell``: ``{"index": [...], "<metric>": array, "spectral": (n, F), ...}``."""
    idx = sorted(plan.done(cell))
    items = [store.read_item(plan.output, cell.folder, i) for i in idx]
    out: dict = {"index": idx, "examples": {}}
    if not items:
        return out
    for name in (*PER_IMAGE, "seconds"):
        if name in items[0]:
            out[name] = np.array([float(it[name]) for it in items])
    for name in COST:
        if name in items[0]:  # items committed before cost accounting have none
            out[name] = np.array([int(it[name]) for it in items])
    for name in ("spectral", "inception"):
        if name in items[0]:
            out[name] = torch.from_numpy(np.stack([it[name] for it in items])).to(torch.float64)
    for i, it in zip(idx, items):
        if "restored" in it:
            out["examples"][i] = (it["restored"], it["measurement"])
    return out


def clean_images(plan, indices) -> torch.Tensor:
    return torch.stack([plan.test_split[i]["image"] for i in indices]).to(torch.float64)


def clean_inception(plan, inception, indices) -> torch.Tensor:
    """Inception features of the clean images, cached in ``DIR/clean_inception.npz`` (keyed by weights and data)."""
    from ...evaluation.fid import inception_features

    path = plan.output / "clean_inception.npz"
    key = json.dumps(
        {
            "fid": plan.cells[0].settings["fid_weights_sha256"],
            "data": plan.cells[0].settings["data"],
            "indices": list(indices),
        },
        sort_keys=True,
        default=str,
    )
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return torch.from_numpy(z["features"])
    feats = torch.cat(
        [inception_features(inception, clean_images(plan, indices[i : i + 32])) for i in range(0, len(indices), 32)]
    )
    buf = io.BytesIO()
    np.savez(buf, key=np.array(key), features=feats.numpy())
    atomic_write_bytes(path, buf.getvalue())
    return feats


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float | None]:
    return mean_and_se(list(b - a))


def cell_stats(plan, data: list[dict], clean_feats: dict) -> list[dict]:
    """One record per cell (module docstring)."""
    n_boot = plan.bootstrap
    records = []
    for ci, (cell, d) in enumerate(zip(plan.cells, data)):
        s = cell.spec
        fails = store.failures(plan.output, cell.folder)
        n = len(d["index"])
        rec = {
            "key": s.key,
            "sampler": s.sampler,
            "task": s.task.label,
            "task_name": s.task.name,
            "task_params": cell.task_params_resolved,
            "steps": s.steps,
            "params": s.params.label,
            "params_source": cell.params_source,
            "sigma_y": s.sigma_y,
            "seed": s.seed,
            "folder": cell.folder,
            "n": n,
            "status": "complete" if n == len(plan.indices) else ("failed" if fails else "partial"),
            "failures": fails,
        }
        if n >= 1:
            for name in PER_IMAGE:
                if name in d:
                    rec[f"{name}_mean"], rec[f"{name}_se"] = mean_and_se(list(d[name]))
            secs = float(np.sum(d["seconds"]))
            rec["compute_s"], rec["images_per_second"] = secs, (n / secs if secs > 0 else None)
            for name in COST:
                if name in d:  # the same for every image of a cell; the largest, should a resumed run differ
                    rec[name] = int(np.max(d[name]))
        for feat, label in (("spectral", "fd"), ("inception", "fid")):
            if n >= 2 and feat in d and feat in clean_feats:
                ref = clean_feats[feat][d["index"]]
                rec[label] = frechet_distance_features(d[feat], ref)
                rec[f"{label}_se"] = bootstrap_se(d[feat], ref, num=n_boot, paired=True) if n_boot >= 2 else None
        twin = data[cell.twin] if cell.twin is not None else None
        twin_failed = twin is not None and bool(store.failures(plan.output, plan.cells[cell.twin].folder))
        if twin is not None and (fails or twin_failed):  # images lost to a failure would bias the comparison
            rec["twin"] = plan.cells[cell.twin].key
            rec["comparison"] = "none: a failed batch in this cell or its twin"
        elif twin is not None and n >= 2 and len(twin["index"]) >= 2:
            rec["twin"] = plan.cells[cell.twin].key
            common = sorted(set(d["index"]) & set(twin["index"]))
            pos_c = [d["index"].index(i) for i in common]
            pos_t = [twin["index"].index(i) for i in common]
            rec["paired_n"] = len(common)
            for name in PER_IMAGE:
                if name in d and name in twin and len(common) >= 2:
                    rec[f"d_{name}"], rec[f"d_{name}_se"] = _paired(twin[name][pos_t], d[name][pos_c])
            for feat, label in (("spectral", "fd"), ("inception", "fid")):
                if feat in d and feat in twin and feat in clean_feats and len(common) >= 2:
                    ref = clean_feats[feat][common]
                    fa, fb = twin[feat][pos_t], d[feat][pos_c]
                    rec[f"d_{label}"] = frechet_distance_features(fb, ref) - frechet_distance_features(fa, ref)
                    rec[f"d_{label}_se"] = bootstrap_difference_se(fa, fb, ref, num=n_boot) if n_boot >= 2 else None
            for name in HIGHER_IS_BETTER:
                v = metric_verdict(rec, name)
                if v is not None:
                    rec[f"{name}_verdict"] = v
            if "psnr_verdict" in rec and "fd_verdict" in rec:  # beyond 2 paired SEs on both (significance.py)
                rec["worse_both"] = rec["psnr_verdict"] == "worse" and rec["fd_verdict"] == "worse"
        records.append(rec)
    return records


def clean_floor(plan, n_boot: int) -> dict | None:
    n = len(plan.indices)
    if len(plan.test_split) < 2 * n:
        return None
    fa = spectral_features(clean_images(plan, list(range(n))))
    fb = spectral_features(clean_images(plan, list(range(n, 2 * n))))
    return {
        "n": n,
        "fd": frechet_distance_features(fa, fb),
        "fd_se": bootstrap_se(fa, fb, num=n_boot) if n_boot >= 2 else None,
        "what": f"test images 0..{n - 1} against {n}..{2 * n - 1}",
    }


def write_results_csv(plan, data: list[dict], path: Path) -> None:
    metrics = [m for m in PER_IMAGE if any(m in d for d in data)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sampler", "task", "steps", "params", "sigma_y", "seed", "index", *metrics, "seconds"])
    for cell, d in zip(plan.cells, data):
        s = cell.spec
        for j, i in enumerate(d["index"]):
            w.writerow(
                [
                    s.sampler,
                    s.task.label,
                    s.steps,
                    s.params.label,
                    repr(s.sigma_y),
                    s.seed,
                    i,
                    *(repr(float(d[m][j])) if m in d else "" for m in metrics),
                    repr(float(d["seconds"][j])),
                ]
            )
    atomic_write_text(path, buf.getvalue())


CELL_COLUMNS = (
    "sampler",
    "task",
    "steps",
    "params",
    "sigma_y",
    "seed",
    "status",
    "n",
    "psnr_mean",
    "psnr_se",
    "ssim_mean",
    "ssim_se",
    "mse_mean",
    "mse_se",
    "mse_unclipped_mean",
    "mse_unclipped_se",
    "lpips_mean",
    "lpips_se",
    "fd",
    "fd_se",
    "fid",
    "fid_se",
    "twin",
    "paired_n",
    "d_psnr",
    "d_psnr_se",
    "d_ssim",
    "d_ssim_se",
    "d_mse",
    "d_mse_se",
    "d_mse_unclipped",
    "d_mse_unclipped_se",
    "d_lpips",
    "d_lpips_se",
    "d_fd",
    "d_fd_se",
    "d_fid",
    "d_fid_se",
    *(f"{name}_verdict" for name in HIGHER_IS_BETTER),
    "worse_both",
    "network_calls",
    "vjps",
    "operator_applications",
    "compute_s",
    "images_per_second",
    "params_source",
    "folder",
    "failures",
)


def write_cells_csv(records: list[dict], path: Path) -> None:
    present = [c for c in CELL_COLUMNS if any(c in r for r in records)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(present)
    for r in records:
        row = []
        for c in present:
            v = r.get(c)
            row.append(
                ""
                if v is None
                else (" | ".join(v) if isinstance(v, list) else (repr(v) if isinstance(v, float) else v))
            )
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())


def write_report(plan, run_info: dict, inception=None) -> dict:
    """Everything from the committed items: results.csv, cells.csv, cells.json, figures/, report.md, and last
    runs.json with ``run_info`` as this run's completed entry (store.start_run entered it as running). Returns the
    cells.json content."""
    from .figures import write_figures
    from .markdown import report_markdown

    data = [load_cell(plan, c) for c in plan.cells]
    clean_idx = plan.indices
    clean_feats = {"spectral": spectral_features(clean_images(plan, clean_idx))}
    if inception is not None:
        clean_feats["inception"] = clean_inception(plan, inception, clean_idx)
    records = cell_stats(plan, data, clean_feats)
    floor = clean_floor(plan, plan.bootstrap)
    out = plan.output
    write_results_csv(plan, data, out / "results.csv")
    write_cells_csv(records, out / "cells.csv")
    runs = store.runs_with(out, run_info)
    content = {"run": run_info, "runs": runs, "clean_floor": floor, "notes": plan.notes, "cells": records}
    write_json(out / "cells.json", content)
    figures = write_figures(plan, records, data, out / "figures")
    atomic_write_text(out / "report.md", report_markdown(plan, records, floor, runs, figures))
    store.write_runs(out, runs)  # last: the run's entry says complete once its report is written
    return json_safe(content)
