"""Predicted against realised output power per frequency ring, for restore runs of one blur cell on the real prior.

For each restore output folder (``params.json``, ``restored/*.npy``, ``truth/*.npy``; same task, sigma_y and
checkpoint), in the surrogate's decorrelated colour basis, channel 0 (luminance), radially averaged over rings of
``|f|``:

- predicted: the closed form's output power given the surrogate, ``|B_k|^2 E|y_k|^2 + V_k`` (transfer.py), divided
  by the surrogate's prior power ``lambda_k`` (a posterior sample has ratio 1 at every frequency);
- realised: the mean power of the restored images (network units, centred on the surrogate's mean) divided by that of
  the clean images, both from the run's files, and the error power ``|x_hat - x|^2`` divided by the clean power.

A ratio below 1 is an output with less power than the images at that frequency (too smooth), above 1 more; the
blur's ``|H_k|^2`` per ring says which frequencies it removes. It shows where a design's closed-form prediction and
its behaviour with the trained network part.

    R="python -m zsguide restore --ckpt_path checkpoints/patches32.ckpt --task deblur_gaussian --sampler ddrm \\
       --steps 20 --sigma_y 0.02 --num_images 64"
    $R --params heuristic --output runs/restore/blur_ddrm_20_heuristic
    $R --params spectral --trust_factor none --output runs/restore/blur_ddrm_20_spectral
    python benchmarks/output_spectrum.py --task deblur_gaussian --sigma_y 0.02 \\
        --runs runs/restore/blur_ddrm_20_heuristic runs/restore/blur_ddrm_20_spectral \\
        --out benchmarks/results/output_spectrum.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zsguide.checkpoint import load_gaussian_prior  # noqa: E402
from zsguide.operators import make_operator  # noqa: E402
from zsguide.samplers.base import ParamSchedule  # noqa: E402
from zsguide.spectral.problem import problem_for  # noqa: E402
from zsguide.spectral.transfer import transfer  # noqa: E402
from zsguide.surrogate import apply_colour, radial_average  # noqa: E402


def load_images(folder: Path) -> torch.Tensor:
    files = sorted(folder.glob("*.npy"), key=lambda p: int(p.stem))
    if not files:
        raise SystemExit(f"error: no .npy images in {folder}")
    return torch.from_numpy(np.stack([np.load(p) for p in files])).to(torch.float64)


def luminance_power(images01: torch.Tensor, surrogate) -> torch.Tensor:
    """Mean over images of ``|F (Q (2 x - 1 - mu))|^2`` in channel 0, shape (H, W)."""
    x = 2 * images01 - 1 - surrogate.mean.to(torch.float64)[:, None, None]
    return torch.fft.fft2(apply_colour(surrogate.Q.to(torch.float64), x), norm="ortho").abs().square().mean(0)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="checkpoints/patches32.ckpt")
    ap.add_argument("--task", default="deblur_gaussian")
    ap.add_argument("--sigma_y", type=float, default=0.02, help="pixel units, as the runs used")
    ap.add_argument("--runs", nargs="+", required=True, help="restore output folders")
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    prior = load_gaussian_prior(args.ckpt)
    sur = prior.surrogate
    op = make_operator(args.task, tuple(prior.meta["image_shape"]), 0, [0])
    problem = problem_for(sur, op, 2 * args.sigma_y)
    if problem.structure != "fourier_diagonal":
        raise SystemExit(
            f"error: --task {args.task} is not a blur (Fourier-diagonal) task; this check is per frequency"
        )
    ey = problem.y_cov()
    lam = problem.frequency_diagonal(problem.Sigma)[0]
    f, h2 = radial_average(problem.frequency_diagonal(problem.H().abs().square())[0], args.bins)
    _, lam_r = radial_average(lam, args.bins)
    result = {"task": args.task, "sigma_y": args.sigma_y, "ring_centres": f.tolist(), "H2": h2.tolist(), "runs": {}}
    print("ring |f|     " + " ".join(f"{v:6.3f}" for v in f.tolist()))
    print("|H|^2        " + " ".join(f"{v:6.3f}" for v in h2.tolist()))
    for run in map(Path, args.runs):
        params = ParamSchedule.load(run / "params.json")
        tr = transfer(params.method, problem, params, prior.schedule.alphas_cumprod)
        out_power = problem.frequency_diagonal(tr.B * ey * tr.B.conj().mT) + problem.frequency_diagonal(tr.V)
        _, pred = radial_average(out_power[0], args.bins)
        restored, truth = load_images(run / "restored").clamp(0, 1), load_images(run / "truth")
        _, p_out = radial_average(luminance_power(restored, sur), args.bins)
        _, p_clean = radial_average(luminance_power(truth, sur), args.bins)
        err = torch.fft.fft2(apply_colour(sur.Q.to(torch.float64), 2 * (restored - truth)), norm="ortho")
        _, p_err = radial_average(err.abs().square().mean(0)[0], args.bins)
        row = {
            "predicted_output_over_prior": (pred / lam_r).tolist(),
            "realised_output_over_clean": (p_out / p_clean).tolist(),
            "realised_error_over_clean": (p_err / p_clean).tolist(),
            "params_source": params.provenance.get("source"),
            "trust_factor": params.provenance.get("trust_factor"),
        }
        result["runs"][run.name] = row
        print(f"{run.name}")
        for k in ("predicted_output_over_prior", "realised_output_over_clean", "realised_error_over_clean"):
            print(f"  {k:28s}" + " ".join(f"{v:6.2f}" for v in row[k]))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
