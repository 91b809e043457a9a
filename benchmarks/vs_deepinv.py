"""Per-step time of our DDRM, DiffPIR and DPS against deepinv 0.5.0's, with the same UNet, batch and step count.

The shipped checkpoint's EMA network is wrapped for deepinv as ``D(x, sigma)`` (pixels, ``x = x0 + sigma n``) by the
VE <-> VP map of tests/test_deepinv_agreement.py (``sigma_net = 2 sigma``, ``abar = 1 / (1 + sigma_net^2)``, the
nearest training time). Task: Gaussian deblurring (deepinv's ``BlurFFT`` with our kernel; DDRM needs its SVD).

    python benchmarks/vs_deepinv.py --ckpt checkpoints/patches32.ckpt --batch 16 --steps 20 --out benchmarks/results/vs_deepinv.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from sampler_overhead import best_of  # noqa: E402 (benchmarks/ is the script's folder)

from zsguide.checkpoint import load_score_module
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler


def main() -> None:
    import deepinv

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="checkpoints/patches32.ckpt")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sigma_y", type=float, default=0.02)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    module, meta = load_score_module(args.ckpt)
    den = module.network_denoiser()
    shape, abar_table = tuple(meta["image_shape"]), module.schedule.alphas_cumprod

    class NetworkAsDeepinv(deepinv.models.Denoiser):
        def forward(self, x, sigma, *a, **k):
            s_net = 2 * torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(x.shape[0])
            abar = 1 / (1 + s_net**2)
            t = (abar_table[None, :] - abar[:, None]).abs().argmin(1)
            x_t = (abar.sqrt().view(-1, 1, 1, 1) * (2 * x - 1)).float()
            return (den.x0(x_t, t) + 1) / 2

    idx = list(range(args.batch))
    op = make_operator("deblur_gaussian", shape, 0, idx)
    x = torch.rand(args.batch, *shape)
    y_net = op.measure(2 * x - 1, 2 * args.sigma_y, op.noise_for(0, idx))
    physics = deepinv.physics.BlurFFT(
        img_size=shape, filter=op.kernel.float(), noise_model=deepinv.physics.GaussianNoise(args.sigma_y)
    )
    y_pix = physics(x)
    net = NetworkAsDeepinv()
    theirs = {
        "ddrm": lambda: deepinv.sampling.DDRM(
            net, sigmas=torch.linspace(1, 0, args.steps + 1).numpy(), eta=0.85, etab=1.0
        )(y_pix, physics),
        "diffpir": lambda: deepinv.sampling.DiffPIR(
            net, deepinv.optim.data_fidelity.L2(), sigma=args.sigma_y, max_iter=args.steps, zeta=0.3, lambda_=3.5
        )(y_pix, physics),
        "dps": lambda: deepinv.sampling.DPS(net, num_steps=args.steps, weight=1.0)(y_pix, physics),
    }
    rows = []
    for name, run_theirs in theirs.items():
        s = get_sampler(name)
        params = s.heuristic("deblur_gaussian", args.steps, module.schedule)
        ours = best_of(
            lambda: s.run(den, op, y_net, 2 * args.sigma_y, params, 0, idx, surrogate=module.surrogate), args.repeats
        )
        with torch.no_grad() if name != "dps" else torch.enable_grad():
            them = best_of(run_theirs, args.repeats)
        rows.append(
            {
                "sampler": name,
                "ours_ms_per_step": 1e3 * ours / args.steps,
                "deepinv_ms_per_step": 1e3 * them / args.steps,
                "ratio_ours_to_deepinv": ours / them,
            }
        )
        print(
            f"{name:8s} ours {rows[-1]['ours_ms_per_step']:7.1f} ms/step  deepinv {rows[-1]['deepinv_ms_per_step']:7.1f}"
            f" ms/step  ratio {ours / them:.3f}"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {
                    "batch": args.batch,
                    "steps": args.steps,
                    "task": "deblur_gaussian",
                    "threads": torch.get_num_threads(),
                    "repeats": args.repeats,
                    "rows": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
