"""Closed form against restore on the Gaussian testbed: the predicted MSE against restore's measured ``mse_mean``.

A `gaussian` checkpoint at 16x16x3 (its surrogate is what matters; fitted here on 4096 fields unless ``--ckpt``), the
analytic denoiser, ``--num_images`` held-out Gaussian fields, sigma_y 0.05: for every sampler, heuristic and
``--params spectral`` (the unconstrained design, ``--trust_factor none``), the closed-form MSE per pixel ([0, 1] units) against restore's ``mse_mean`` ± its standard
error. For ``inpaint_random`` every image has its own mask, so the prediction is the mean of the closed form over the
first ``--masks`` images' masks (16x16: exact, no window reduction), with the same schedule (the one restore used, read
from its params.json).

    python benchmarks/restore_vs_analyze.py --tasks sr2 inpaint_random --out benchmarks/results/restore_vs_analyze.json
    # designs inside a trust region as well (rows spectral_trust2):
    python benchmarks/restore_vs_analyze.py --tasks sr2 --samplers dps --trust_factor 2 \
        --ckpt runs/benchmarks/restore_vs_analyze/gaussian16.ckpt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLERS = ("ddrm", "ddnm", "pigdm", "dps", "diffpir", "oracle")


def _fit(out: Path) -> Path:
    ckpt = out / "gaussian16.ckpt"
    if ckpt.is_file():
        return ckpt
    subprocess.run(
        [
            sys.executable,
            "-m",
            "zsguide",
            "fit",
            "--config",
            "configs/fit/gaussian.yaml",
            "--data.image_size",
            "16",
            "--trainer.max_steps",
            "10",
            "--trainer.val_check_interval",
            "10",
            "--trainer.default_root_dir",
            str(out / "fit"),
            "--trainer.logger",
            "false",
            "--trainer.callbacks",
            "[]",
            "--trainer.enable_checkpointing",
            "true",
        ],
        cwd=ROOT,
        check=True,
    )
    found = sorted((out / "fit").rglob("*.ckpt"))
    found[-1].replace(ckpt)
    return ckpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["sr2", "inpaint_random"])
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--num_images", type=int, default=256)
    ap.add_argument("--masks", type=int, default=16)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--workdir", default="runs/benchmarks/restore_vs_analyze")
    ap.add_argument("--out", default="benchmarks/results/restore_vs_analyze.json")
    ap.add_argument(
        "--trust_factor",
        type=float,
        default=None,
        help="also run --params spectral --trust_factor T (rows labelled spectral_trust<T>)",
    )
    args = ap.parse_args()
    import torch

    from zsguide.checkpoint import load_score_module
    from zsguide.operators import make_operator
    from zsguide.samplers.base import ParamSchedule
    from zsguide.spectral.criteria import Criteria
    from zsguide.spectral.problem import problem_for
    from zsguide.spectral.transfer import transfer

    work = ROOT / args.workdir
    work.mkdir(parents=True, exist_ok=True)
    ckpt = Path(args.ckpt) if args.ckpt else _fit(work)
    module, meta = load_score_module(ckpt)
    shape = tuple(meta["image_shape"])
    sigma_y = 0.05
    out_path = ROOT / args.out
    rows = json.loads(out_path.read_text())["rows"] if out_path.is_file() else []
    done = {(r["task"], r["sampler"], r["params"]) for r in rows}
    for task in args.tasks:
        n_ops = args.masks if task.startswith("inpaint") else 1
        problems = [
            problem_for(module.surrogate, make_operator(task, shape, 0, [i]), 2 * sigma_y) for i in range(n_ops)
        ]
        crits = [Criteria(p) for p in problems]
        for name in args.samplers:
            labels = ["heuristic", "spectral"] + ([f"spectral_trust{args.trust_factor:g}"] if args.trust_factor else [])
            for params in labels:
                if (task, name, params) in done or (name == "oracle" and params.startswith("spectral")):
                    continue
                run = work / f"{task}-{name}-{params}"
                cmd = [
                    sys.executable,
                    "-m",
                    "zsguide",
                    "restore",
                    "--ckpt_path",
                    str(ckpt),
                    "--task",
                    task,
                    "--sampler",
                    name,
                    "--steps",
                    str(args.steps),
                    "--sigma_y",
                    str(sigma_y),
                    "--denoiser",
                    "analytic",
                    "--num_images",
                    str(args.num_images),
                    "--params",
                    params.split("_trust")[0],
                    "--batch_size",
                    "64",
                    "--output",
                    str(run),
                ]
                if params.startswith("spectral"):  # "spectral": the unconstrained design (restore's default is 2)
                    cmd += ["--trust_factor", str(args.trust_factor) if params.startswith("spectral_trust") else "none"]
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{task} {name} {params}: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
                    continue
                summary = json.loads((run / "summary.json").read_text())
                sched = ParamSchedule.load(run / "params.json")
                pred = (
                    sum(
                        float(c(transfer(name, p, sched, module.schedule.alphas_cumprod))["mse"])
                        for p, c in zip(problems, crits)
                    )
                    / len(problems)
                    / 4
                )  # network -> [0, 1] units
                z = (summary["mse_mean"] - pred) / summary["mse_se"]
                rows.append(
                    {
                        "task": task,
                        "sampler": name,
                        "params": params,
                        "predicted_mse": pred,
                        "measured_mse": summary["mse_mean"],
                        "measured_se": summary["mse_se"],
                        "z": z,
                        "num_images": summary["num_images"],
                        "operators_averaged": len(problems),
                    }
                )
                print(
                    f"{task:15s} {name:8s} {params:9s} predicted {pred:.5e} measured {summary['mse_mean']:.5e} "
                    f"± {summary['mse_se']:.1e}  z {z:+.2f}",
                    flush=True,
                )
                out_path.write_text(
                    json.dumps(
                        {
                            "steps": args.steps,
                            "sigma_y": sigma_y,
                            "image_shape": list(shape),
                            "checkpoint": str(ckpt),
                            "rows": rows,
                        },
                        indent=2,
                    )
                )
    del torch


if __name__ == "__main__":
    main()
