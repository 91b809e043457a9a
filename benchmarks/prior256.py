"""256 x 256 end to end with a full-size ADM network (random weights in the ``ffhq_10m`` architecture, 93.6M
parameters, saved as guided-diffusion saves its files): ``prior`` from a folder of 256 x 256 photographs, ``restore``
time per image, the memory one gradient step takes per image (what DPS and PiGDM need), and the spectral engine's
``analyze`` at 256 x 256 x 3 (cold and warm design cache).

    python benchmarks/prior256.py --out benchmarks/results/prior256_cpu.json             # this CPU
    python benchmarks/prior256.py --device cuda --out benchmarks/results/prior256_cuda.json  # where a GPU is lent

Each measurement runs in a fresh subprocess (whole commands, imports included), so the memory figures are the
process's own: peak resident memory (``VmHWM``) during one denoiser forward + vector-Jacobian product, minus the
resident memory before it (weights loaded), per image, at batch sizes 1 and 2; on CUDA
``torch.cuda.max_memory_allocated`` likewise. Numbers are meaningless as restorations (random weights): only the
time and memory are measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

MEMORY_PROBE = r"""
import json, sys, torch
from zsguide.checkpoint import load_score_module
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
prior, batch, device, ckpt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
module, meta = load_score_module(prior)
if ckpt:
    for m in module.net.modules():
        if hasattr(m, "use_checkpoint"):
            m.use_checkpoint = True
module = module.to(device)
den = module.network_denoiser()
x = torch.randn(batch, *meta["image_shape"], device=device)
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
else:
    base = rss("VmRSS")
xg = x.requires_grad_(True)
out = den.x0(xg, 500)
(g,) = torch.autograd.grad(out, xg, grad_outputs=torch.ones_like(out))
peak = torch.cuda.max_memory_allocated() if device == "cuda" else rss("VmHWM")
print(json.dumps({"batch": batch, "gradient_checkpointing": ckpt, "bytes_per_image": (peak - base) / batch}))
"""


def run(args: list[str], env: dict, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"failed: {' '.join(map(str, args))}")
    return time.perf_counter() - t0, proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=2, help="images restored per timed run")
    ap.add_argument("--samplers", nargs="*", default=["ddrm:20"], help="sampler:steps pairs to time")
    ap.add_argument("--precisions", nargs="*", default=["32-true"])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    import torch
    from skimage import data as skdata
    from skimage import io as skio

    from zsguide.networks.adm import ADMUNet, preset_config

    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    py = [sys.executable, "-m", "zsguide"]
    work = Path(tempfile.mkdtemp(prefix="prior256_"))
    env["ZSGUIDE_CACHE"] = str(work / "cache")
    torch.manual_seed(0)
    torch.save(ADMUNet(preset_config("ffhq_10m")).state_dict(), work / "ffhq_10m_random.pt")
    photos = work / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for k, img in enumerate([skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()] * 3):
        h, w = img.shape[:2]
        y, x = rng.integers(0, h - 255), rng.integers(0, w - 255)
        skio.imsave(photos / f"im{k:02d}.png", img[y : y + 256, x : x + 256], check_contrast=False)
    record: dict = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "network": "ADM ffhq_10m architecture, random weights (93.6M parameters)",
    }
    if args.device == "cuda":
        record["gpu"] = torch.cuda.get_device_name(0)

    wall, _ = run(
        [
            *py,
            "prior",
            "--network",
            work / "ffhq_10m_random.pt",
            "--arch",
            "adm:ffhq_10m",
            "--data.name",
            "folder",
            "--data.root",
            photos,
            "--data.split_policy",
            "all",
            "--output",
            work / "prior.ckpt",
        ],
        env,
        work,
    )
    record["prior_command_s"] = wall
    print(f"prior: {wall:.1f} s", flush=True)

    record["restore"] = []
    for spec in args.samplers:
        sampler, steps = spec.split(":")
        for precision in args.precisions:
            wall, proc = run(
                [
                    *py,
                    "restore",
                    "--ckpt_path",
                    work / "prior.ckpt",
                    "--task",
                    "sr4",
                    "--sampler",
                    sampler,
                    "--steps",
                    steps,
                    "--num_images",
                    str(args.images),
                    "--batch_size",
                    str(args.images),
                    "--trainer.accelerator",
                    args.device,
                    "--trainer.precision",
                    precision,
                    "--trainer.enable_progress_bar",
                    "false",
                    "--output",
                    work / f"r_{sampler}",
                ],
                env,
                work,
            )
            summary = json.loads((work / f"r_{sampler}" / "summary.json").read_text())
            row = {
                "sampler": sampler,
                "steps": int(steps),
                "precision": precision,
                "images": args.images,
                "command_s": wall,
                "sampling_s": summary.get("wall_time_s"),
                "s_per_image": summary.get("wall_time_s") / args.images,
            }
            record["restore"].append(row)
            print(row, flush=True)

    record["gradient_memory"] = []
    for ckpt in ("0", "1"):
        for batch in ("1", "2"):
            _, proc = run(
                [sys.executable, "-c", MEMORY_PROBE, work / "prior.ckpt", batch, args.device, ckpt], env, work
            )
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["gib_per_image"] = row["bytes_per_image"] / 2**30
            record["gradient_memory"].append(row)
            print(row, flush=True)

    record["analyze"] = []
    for task in ("deblur_gaussian", "sr4", "inpaint_random"):
        for cache in ("cold", "warm"):
            wall, proc = run(
                [
                    *py,
                    "analyze",
                    "--ckpt_path",
                    work / "prior.ckpt",
                    "--task",
                    task,
                    "--steps",
                    "100",
                    "--sigma_y",
                    "0.02",
                    "--output",
                    work / f"an_{task}",
                ],
                env,
                work,
            )
            analysis = json.loads((work / f"an_{task}" / "analysis.json").read_text())
            row = {
                "task": task,
                "cache": cache,
                "command_s": wall,
                "reduction": analysis.get("reduction"),
                "avg_w2": {
                    k: [v["heuristic"]["avg_w2"], v["spectral"]["avg_w2"]] for k, v in analysis["samplers"].items()
                },
            }
            record["analyze"].append(row)
            print({k: row[k] for k in ("task", "cache", "command_s")}, flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
