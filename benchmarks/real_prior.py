"""Heuristic against spectral parameters on the real prior: PSNR, SSIM and the Frechet spectral distance, per cell.

For the shipped checkpoint (default ``checkpoints/patches32.ckpt``) and every sampler x task x steps, runs
``python -m zsguide restore`` twice on the first ``--num_images`` held-out test patches, ``--params heuristic`` and
``--params spectral`` (network denoiser, same seed, so the same measurements and the same images), each in its own
subprocess with a per-cell timeout. From each run's outputs it takes PSNR and SSIM (mean and standard error, from
``summary.json``; the paired difference spectral - heuristic and its standard error from the two ``metrics.csv``) and
computes the Frechet spectral distance (zsguide/evaluation/perception.py) between the restored set
(``restored/*.npy``, clipped to [0, 1] as for the metrics) and the clean set (``truth/*.npy``), with a bootstrap
standard error (image pairs resampled), and the paired bootstrap standard error of the difference spectral -
heuristic (the same images resampled in both runs and the clean set). As a floor it also gives the distance between
the first N clean test patches and the next N (what two clean sets of this size differ by).

A cell that restore refuses (``--params spectral`` not supported yet for a task or sampler, or any other error) is
recorded with its error line; a cell past ``--timeout`` is recorded as a timeout; the run goes on. Every finished
cell is written to ``--out`` at once (atomically), and a rerun resumes from it: cells already done with the same
settings are skipped (errors are retried, timeouts only with ``--retry_timeouts``). Designed schedules come from the
design cache (``$ZSGUIDE_CACHE``, default ``~/.cache/zsguide/designs``), which the subprocesses inherit.

Flag: ``worse_both`` when spectral has a lower PSNR *and* a higher Frechet distance than the heuristic in a cell
(raw values; the standard errors say whether the difference is more than noise).

    # the full grid on a CUDA machine (64 held-out patches, 20 and 100 steps):
    python benchmarks/real_prior.py --device cuda --out benchmarks/results/real_prior.json
    # designs inside a trust region (every knob within a factor 2 of its heuristic), reusing the heuristic cells:
    python benchmarks/real_prior.py --trust_factor 2 --heuristic_from benchmarks/results/real_prior.json \
        --out benchmarks/results/real_prior_trust2.json
    # a tiny CPU check:
    python benchmarks/real_prior.py --device cpu --samplers diffpir --tasks deblur_gaussian --steps 20 \\
        --num_images 16 --out benchmarks/results/real_prior_cpu_smoke.json
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zsguide.evaluation.perception import (  # noqa: E402
    bootstrap_difference_se,
    bootstrap_se,
    frechet_distance_features,
    spectral_features,
)

SAMPLERS = ("ddrm", "ddnm", "pigdm", "dps", "diffpir", "oracle")
TASKS = ("deblur_gaussian", "sr4", "inpaint_random")
STEPS = (20, 100)


def spectral_label(trust: float | None, guard: bool = False) -> str:
    """The spectral column's name: ``spectral`` (the unconstrained design, ``restore --trust_factor none``), or
    ``spectral_trust<T>`` for a design inside a trust region (``--trust_factor T``; restore's default is T = 2);
    ``_guard`` appended with the Pareto guard (``--pareto_guard true``)."""
    return ("spectral" if trust is None else f"spectral_trust{trust:g}") + ("_guard" if guard else "")
FEATURES = "per channel: log power in min(H, W) // 4 radial rings, mean, std (perception.py)"


def cell_key(sampler: str, task: str, steps: int, params: str) -> str:
    return f"{sampler}/{task}/{steps}/{params}"


def settings_of(args) -> dict:
    """What makes a cell's numbers what they are (a cell done under other settings is recomputed)."""
    return {"ckpt": str(args.ckpt), "num_images": args.num_images, "sigma_y": args.sigma_y, "seed": args.seed,
            "denoiser": args.denoiser, "bootstrap": args.bootstrap, "features": FEATURES}


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True))
    os.replace(tmp, path)


def load_npy_dir(folder: Path) -> tuple[list[int], torch.Tensor]:
    files = sorted(folder.glob("*.npy"), key=lambda p: int(p.stem))
    if not files:
        raise RuntimeError(f"no .npy images in {folder}")
    return [int(p.stem) for p in files], torch.from_numpy(np.stack([np.load(p) for p in files])).to(torch.float64)


def read_metrics(path: Path) -> dict[int, dict[str, float]]:
    with open(path, newline="") as fh:
        return {int(r["index"]): {k: float(v) for k, v in r.items() if k != "index" and v != ""}
                for r in csv.DictReader(fh)}


def last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    if errors:
        return errors[-1]
    return " | ".join(lines[-3:]) if lines else "(no output)"


def restore_command(args, sampler: str, task: str, steps: int, params: str, out: Path) -> list[str]:
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    return [sys.executable, "-m", "zsguide", "restore", "--ckpt_path", str(args.ckpt), "--task", task,
            "--sampler", sampler, "--steps", str(steps),
            "--params", "spectral" if params.startswith("spectral") else params,
            *(["--trust_factor", str(args.trust_factor) if params.startswith("spectral_trust") else "none"]
              if params.startswith("spectral") else []),
            *(["--pareto_guard", "true"] if params.endswith("_guard") else []),
            "--sigma_y", str(args.sigma_y),
            "--seed", str(args.seed), "--num_images", str(args.num_images), "--batch_size", str(args.batch_size),
            "--denoiser", args.denoiser, "--output", str(out), "--trainer.accelerator", accelerator,
            "--trainer.devices", "1", "--trainer.precision", "32-true", "--trainer.enable_progress_bar", "false"]


def run_cell(args, sampler: str, task: str, steps: int, params: str) -> dict:
    out = Path(args.workdir) / f"{task}_{sampler}_{steps}_{params}"
    out.mkdir(parents=True, exist_ok=True)
    cmd = restore_command(args, sampler, task, steps, params, out)
    record = {"sampler": sampler, "task": task, "steps": steps, "params": params, "settings": settings_of(args),
              "output": str(out), "command": " ".join(cmd[1:])}
    t0 = time.perf_counter()
    with open(out / "stdout.log", "w") as so, open(out / "stderr.log", "w") as se:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=so, stderr=se, timeout=args.timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    record["seconds"] = round(time.perf_counter() - t0, 1)
    log = (out / "stderr.log").read_text(errors="replace") + (out / "stdout.log").read_text(errors="replace")
    if rc is None:
        return record | {"status": "timeout", "message": f"restore ran past --timeout {args.timeout} s"}
    summary_path = out / "summary.json"
    if rc != 0 or not summary_path.is_file():
        return record | {"status": "error", "returncode": rc, "message": last_error_line(log)}
    summary = json.loads(summary_path.read_text())
    idx_r, restored = load_npy_dir(out / "restored")
    idx_t, truth = load_npy_dir(out / "truth")
    if idx_r != idx_t:
        return record | {"status": "error", "message": "restored/ and truth/ hold different indices"}
    if summary.get("clipped", True):
        restored = restored.clamp(0, 1)
    f_rest, f_clean = spectral_features(restored), spectral_features(truth)
    fd = frechet_distance_features(f_rest, f_clean)
    fd_se = bootstrap_se(f_rest, f_clean, num=args.bootstrap, paired=True) if args.bootstrap >= 2 else None
    provenance = {}
    if (out / "params.json").is_file():
        provenance = json.loads((out / "params.json").read_text()).get("provenance", {})
    return record | {
        "status": "ok", "n": len(idx_r), "clipped": bool(summary.get("clipped", True)),
        "psnr_mean": summary["psnr_mean"], "psnr_se": summary["psnr_se"],
        "ssim_mean": summary["ssim_mean"], "ssim_se": summary["ssim_se"],
        "mse_mean": summary.get("mse_mean"), "mse_se": summary.get("mse_se"),
        "fd": fd, "fd_se": fd_se, "wall_time_s": summary.get("wall_time_s"),
        "params_source": summary.get("params_source", params), "provenance": provenance,
    }


def clean_floor(args) -> dict | None:
    """FD between the first N clean test patches and the next N (None when the test split has fewer than 2N)."""
    from zsguide.checkpoint import load_score_module
    from zsguide.data import ImageDataModule

    _, meta = load_score_module(args.ckpt)
    accepted = set(inspect.signature(ImageDataModule.__init__).parameters) - {"self", "batch_size", "num_workers"}
    options = {k: v for k, v in (meta.get("data") or {}).items() if k in accepted}
    test = ImageDataModule(**options).dataset("test")
    n = args.num_images
    if len(test) < 2 * n:
        return None
    a = torch.stack([test[i]["image"] for i in range(n)]).to(torch.float64)
    b = torch.stack([test[i]["image"] for i in range(n, 2 * n)]).to(torch.float64)
    fa, fb = spectral_features(a), spectral_features(b)
    return {"n": n, "fd": frechet_distance_features(fa, fb),
            "fd_se": bootstrap_se(fa, fb, num=args.bootstrap) if args.bootstrap >= 2 else None,
            "what": f"test patches 0..{n - 1} against {n}..{2 * n - 1}"}


def compare(h: dict, s: dict, bootstrap: int) -> dict:
    """Spectral against heuristic in one cell: differences, their paired standard errors, the flag."""
    out = {"d_psnr": s["psnr_mean"] - h["psnr_mean"], "d_ssim": s["ssim_mean"] - h["ssim_mean"],
           "d_fd": s["fd"] - h["fd"]}
    idx_h, rest_h = load_npy_dir(Path(h["output"]) / "restored")
    idx_s, rest_s = load_npy_dir(Path(s["output"]) / "restored")
    idx_t, truth = load_npy_dir(Path(h["output"]) / "truth")
    if bootstrap >= 2 and idx_h == idx_s == idx_t:
        if h.get("clipped", True):
            rest_h, rest_s = rest_h.clamp(0, 1), rest_s.clamp(0, 1)
        out["d_fd_paired_se"] = bootstrap_difference_se(spectral_features(rest_h), spectral_features(rest_s),
                                                        spectral_features(truth), num=bootstrap)
    mh, ms = read_metrics(Path(h["output"]) / "metrics.csv"), read_metrics(Path(s["output"]) / "metrics.csv")
    common = sorted(set(mh) & set(ms))
    for name in ("psnr", "ssim"):
        d = [ms[i][name] - mh[i][name] for i in common]
        if len(d) >= 2:
            mean = sum(d) / len(d)
            out[f"d_{name}_paired_se"] = math.sqrt(sum((v - mean) ** 2 for v in d) / (len(d) - 1) / len(d))
    out["worse_both"] = bool(out["d_psnr"] < 0 and out["d_fd"] > 0)
    return out


def fmt(cell: dict | None) -> str:
    if cell is None:
        return "not run | | "
    if cell["status"] != "ok":
        msg = cell.get("message", "").removeprefix("error:").strip().replace("|", "/")
        return f"{cell['status']}: {msg[:90]} | | "
    fd_se = f" ± {cell['fd_se']:.3f}" if cell.get("fd_se") is not None else ""
    return (f"{cell['psnr_mean']:.2f} ± {cell['psnr_se']:.2f} | {cell['ssim_mean']:.3f} ± {cell['ssim_se']:.3f} | "
            f"{cell['fd']:.3f}{fd_se}")


def table(results: dict, args) -> str:
    lines = ["| sampler | task | steps | heuristic PSNR | SSIM | FD | spectral PSNR | SSIM | FD | "
             "ΔPSNR (paired SE) | ΔFD (paired SE) | worse on both |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for sampler in args.samplers:
        for task in args.tasks:
            for steps in args.steps:
                cells = results["cells"]
                h = cells.get(cell_key(sampler, task, steps, "heuristic"))
                s = cells.get(cell_key(sampler, task, steps, args.label))
                cmp = results["comparisons"].get(cell_key(sampler, task, steps, "cmp"))
                if cmp:
                    dp = f"{cmp['d_psnr']:+.2f} ({cmp.get('d_psnr_paired_se', float('nan')):.2f})"
                    dfd = f"{cmp['d_fd']:+.3f} ({cmp.get('d_fd_paired_se', float('nan')):.3f})"
                    flag = "**yes**" if cmp["worse_both"] else "no"
                else:
                    dp, dfd, flag = "", "", ""
                lines.append(f"| {sampler} | {task} | {steps} | {fmt(h)} | {fmt(s)} | {dp} | {dfd} | {flag} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--ckpt", default="checkpoints/patches32.ckpt")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--steps", nargs="+", type=int, default=list(STEPS))
    ap.add_argument("--num_images", type=int, default=64)
    ap.add_argument("--sigma_y", type=float, default=0.02, help="measurement noise, [0, 1] pixel units")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--denoiser", default="network", choices=("network", "analytic"))
    ap.add_argument("--batch_size", type=int, default=None, help="default: 64 on cuda, 16 on cpu")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per cell (one restore run)")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the FD's standard error")
    ap.add_argument("--workdir", default="runs/benchmarks/real_prior", help="restore outputs, one folder per cell")
    ap.add_argument("--out", default="benchmarks/results/real_prior.json")
    ap.add_argument("--retry_timeouts", action="store_true")
    ap.add_argument("--trust_factor", type=float, default=None,
                    help="design inside a trust region (restore --trust_factor T): the spectral column becomes "
                         "spectral_trust<T>; use its own --out")
    ap.add_argument("--pareto_guard", action="store_true",
                    help="designs with restore --pareto_guard true (MSE and perception W2 no worse than the "
                         "heuristic's in closed form): the spectral column gets the suffix _guard; use its own --out")
    ap.add_argument("--heuristic_from", default=None,
                    help="a results file of the same settings whose finished heuristic cells are reused")
    args = ap.parse_args()
    if args.trust_factor is not None and not (math.isfinite(args.trust_factor) and args.trust_factor > 1):
        ap.error(f"--trust_factor must be a finite number > 1 (leave it out for the unconstrained design), "
                 f"got {args.trust_factor!r}")
    args.label = spectral_label(args.trust_factor, args.pareto_guard)  # the spectral column's name
    if args.num_images < 2:
        ap.error("--num_images must be >= 2 (a Frechet distance needs two images per set)")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device here")
    if args.batch_size is None:
        args.batch_size = 64 if args.device == "cuda" else 16
    args.ckpt = str(Path(args.ckpt))
    os.chdir(ROOT)
    out_path = Path(args.out)

    results: dict = {"cells": {}, "comparisons": {}}
    if out_path.is_file():
        results = json.loads(out_path.read_text())
        results.setdefault("cells", {})
        results.setdefault("comparisons", {})
        if results.get("settings", settings_of(args)) != settings_of(args):
            ap.error(f"{out_path} holds results for other settings ({results['settings']}); give another --out")
    results["settings"] = settings_of(args)
    if args.heuristic_from:
        other = json.loads(Path(args.heuristic_from).read_text())
        if other.get("settings") != settings_of(args):
            ap.error(f"--heuristic_from {args.heuristic_from} holds results for other settings")
        for key, cell in other["cells"].items():
            if key.endswith("/heuristic") and cell.get("status") == "ok":
                results["cells"].setdefault(key, cell)
    results["config"] = {"checkpoint": args.ckpt, "device": args.device, "num_images": args.num_images,
                         "sigma_y": args.sigma_y, "noise_convention": "pixel", "seed": args.seed,
                         "denoiser": args.denoiser, "batch_size": args.batch_size, "bootstrap": args.bootstrap,
                         "fd": "Frechet distance on spectral statistics (zsguide/evaluation/perception.py): "
                               "restored (clipped to [0, 1]) against clean test patches",
                         "torch": torch.__version__,
                         "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" and torch.cuda.is_available()
                         else None}
    floor_key = f"clean_floor_{args.num_images}"
    if results.get(floor_key) is None:
        results[floor_key] = clean_floor(args)
        write_json_atomic(out_path, results)
    print(f"clean floor: {results[floor_key]}", flush=True)

    settings = settings_of(args)
    for sampler in args.samplers:
        for task in args.tasks:
            for steps in args.steps:
                for params in ("heuristic", args.label):
                    key = cell_key(sampler, task, steps, params)
                    old = results["cells"].get(key)
                    if old and old.get("settings") == settings and (
                            old["status"] == "ok" or (old["status"] == "timeout" and not args.retry_timeouts)):
                        print(f"[skip] {key}: {old['status']}", flush=True)
                        continue
                    print(f"[run ] {key} ...", flush=True)
                    cell = run_cell(args, sampler, task, steps, params)
                    results["cells"][key] = cell
                    write_json_atomic(out_path, results)
                    brief = (f"PSNR {cell['psnr_mean']:.2f} SSIM {cell['ssim_mean']:.3f} FD {cell['fd']:.3f}"
                             if cell["status"] == "ok" else f"{cell['status']}: {cell.get('message')}")
                    print(f"[done] {key} ({cell['seconds']} s): {brief}", flush=True)
                h = results["cells"].get(cell_key(sampler, task, steps, "heuristic"))
                s = results["cells"].get(cell_key(sampler, task, steps, args.label))
                cmp_key = cell_key(sampler, task, steps, "cmp")
                if h and s and h["status"] == s["status"] == "ok":
                    results["comparisons"][cmp_key] = compare(h, s, args.bootstrap)
                else:
                    results["comparisons"].pop(cmp_key, None)
                write_json_atomic(out_path, results)
    text = table(results, args)
    print(text)
    flagged = [k for k, v in results["comparisons"].items() if v.get("worse_both")]
    print(f"\ncells where spectral is worse on both PSNR and FD: {len(flagged)}"
          + (f" ({', '.join(k.rsplit('/', 1)[0] for k in flagged)})" if flagged else ""))


if __name__ == "__main__":
    main()
