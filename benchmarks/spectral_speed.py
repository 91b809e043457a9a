"""Speed of the spectral CLI on this machine: ``analyze`` (every sampler, one task, 32x32x3, 100 steps) cold (empty
design cache: designs included) and warm (designs cached; the median of ``--warm_repeats`` runs, all recorded), and
``tune`` (one sampler) cold; wall time of the whole
command, imports and checkpoint loading included. Goals (the spectral-engine issue): analyze <= 10 s, tune <= 120 s.

    python benchmarks/spectral_speed.py --tasks deblur_gaussian sr4 inpaint_random --out benchmarks/results/spectral_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(args: list[str], env: dict) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "zsguide", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return time.perf_counter() - t0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="checkpoints/patches32.ckpt")
    ap.add_argument("--tasks", nargs="+", default=["deblur_gaussian"])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--tune_sampler", default="diffpir")
    ap.add_argument("--warm_repeats", type=int, default=5, help="warm analyze runs (the machine's timing noise)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for task in args.tasks:
        cache = tempfile.mkdtemp(prefix="zsguide-speed-")
        env = {**os.environ, "ZSGUIDE_CACHE": cache}
        common = ["--ckpt_path", args.ckpt, "--task", task, "--steps", str(args.steps), "--sigma_y", "0.02"]
        tune_s, rc_t = _timed(
            ["tune", *common, "--sampler", args.tune_sampler, "--output", str(Path(cache) / "p.json")], env
        )
        cold_s, rc_c = _timed(["analyze", *common, "--output", str(Path(cache) / "a")], env)
        warm = [_timed(["analyze", *common, "--output", str(Path(cache) / "b")], env) for _ in range(args.warm_repeats)]
        times = sorted(t for t, _ in warm)
        rows.append(
            {
                "task": task,
                "steps": args.steps,
                "tune_sampler": args.tune_sampler,
                "tune_cold_s": tune_s,
                "analyze_cold_s": cold_s,
                "analyze_warm_s": times[len(times) // 2],
                "analyze_warm_runs_s": times,
                "ok": not (rc_t or rc_c or any(rc for _, rc in warm)),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "cpu_count": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
