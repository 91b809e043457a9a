"""``python -m zsguide calibrate``: measure a checkpoint's denoiser against its Gaussian surrogate (response.py).

Held-out test images (the checkpoint's data, ``--data.*``; the first ``--num_images``) are noised at each calibrated
time, ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` with ``eps`` from (``--seed``, image index, time, draw), and
denoised (``--denoiser network``, or ``analytic``: the surrogate's Wiener denoiser, whose calibration is the Wiener
gain and no residual). One Lightning predict loop on 1..N devices; the float64 sums are all-reduced, and the
jackknife groups follow the image index, so the result does not depend on the device count (to float rounding).

Times: ``--timesteps`` as given, else ``--num_times`` (25) times evenly spaced in log SNR ``abar / (1 - abar)``
over the whole schedule. Output: ``--output``, default next to the checkpoint, ``<checkpoint>.calibration-<digest>.pt``
with the digest of the checkpoint file and the denoiser (a changed network gives another file); a dict of tensors
and plain values (read with ``weights_only=True``), written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import lightning as L
import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from ...errors import ZSGuideError
from ...runtime import signals
from ...runtime.options import DENOISERS, add_data_options, add_trainer_options, parse_one_line
from ...seeding import randn_per_image
from ...spectral.denoiser_model import calibration_path
from .response import GROUPS, Response, ResponseAccumulator

KIND = "calibration"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m zsguide calibrate", description=__doc__.splitlines()[0], exit_on_error=False, default_meta=False
    )
    p.add_argument("--config", action=ActionConfigFile)
    p.add_argument(
        "--ckpt_path",
        "--ckpt",
        type=Optional[str],
        default=None,
        help="checkpoint written by 'python -m zsguide fit', or a prior file (required)",
    )
    p.add_argument(
        "--timesteps",
        type=Optional[list[int]],
        default=None,
        help="times to calibrate (default: --num_times times evenly spaced in log SNR)",
    )
    p.add_argument("--num_times", type=int, default=25)
    p.add_argument("--draws", type=int, default=4, help="noise draws per image and time")
    p.add_argument("--num_images", "-n", type=Optional[int], default=None, help="the first N held-out test images")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--denoiser", type=str, default="network", help="network or analytic")
    p.add_argument(
        "--output",
        "-o",
        type=Optional[str],
        default=None,
        help="calibration file (default <checkpoint>.calibration-<digest>.pt)",
    )
    add_data_options(p, "default: the checkpoint's data option")
    add_trainer_options(p)
    return p


def default_timesteps(alphas_cumprod: torch.Tensor, num: int) -> list[int]:
    """``num`` distinct timesteps evenly spaced in ``log(abar / (1 - abar))`` from the last to the first."""
    abar = alphas_cumprod.to(torch.float64)
    log_snr = torch.log(abar / (1 - abar))  # decreasing in t
    targets = torch.linspace(float(log_snr[-1]), float(log_snr[0]), num, dtype=torch.float64)
    idx = torch.searchsorted(-log_snr, -targets).clamp(0, len(abar) - 1)
    return sorted({int(i) for i in idx}, reverse=True)


class Calibrate(L.LightningModule):
    """The images in fixed batches of ``batch_size`` (by index), shared round-robin among the ranks as ``evaluate``
    shares its batches (runtime/shard.py): a network's float32 rounding can depend on the batch it sees, so the
    batches must not depend on the device count."""

    def __init__(
        self, score, images, batch_size: int, denoiser_kind: str, timesteps: list[int], draws: int, seed: int
    ) -> None:
        super().__init__()
        self.score = score.requires_grad_(False).eval()
        self.images, self.batch_size = images, int(batch_size)
        self.kind, self.draws, self.seed = denoiser_kind, int(draws), int(seed)
        self.acc = ResponseAccumulator(score.surrogate, timesteps, score.schedule.alphas_cumprod)
        self.response: Response | None = None

    def predict_dataloader(self):
        from ...runtime.shard import EMPTY_BATCH, WorkBatches, chunks, shard

        batches = [(0, chunk) for chunk in chunks(list(range(len(self.images))), self.batch_size)]
        mine = shard(batches, self.trainer.global_rank, self.trainer.world_size) or [EMPTY_BATCH]
        return torch.utils.data.DataLoader(WorkBatches(self.images, mine), batch_size=None, shuffle=False)

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        if int(batch["cell"]) < 0:  # a rank with no batch
            return
        den = self.score.network_denoiser() if self.kind == "network" else self.score.analytic_denoiser()
        x0 = 2 * batch["image"] - 1
        idx = [int(i) for i in batch["index"]]
        for j, t in enumerate(self.acc.timesteps):
            a = float(self.acc.abar[j])
            for d in range(self.draws):
                signals.check()  # a SIGTERM or SIGINT stops the run at the next network call
                eps = randn_per_image(
                    x0.shape[1:], self.seed, idx, f"calibrate/{t}/{d}", dtype=x0.dtype, device=x0.device
                )
                x_t = a**0.5 * x0 + (1 - a) ** 0.5 * eps
                self.acc.update(j, x_t, den.x0(x_t, t), idx)

    def on_predict_epoch_end(self) -> None:
        packed = self.acc.state()
        if self.trainer.world_size > 1:
            packed = self.trainer.strategy.reduce(packed.to(self.device), reduce_op="sum").cpu()
        self.acc.load_state(packed)
        self.response = self.acc.finish(self.draws)


def run_calibrate(argv: list[str]) -> None:
    from lightning.fabric.utilities.rank_zero import rank_zero_info

    from ...checkpoint import image_shape as checkpoint_image_shape
    from ...checkpoint import load_score_module
    from ...runtime.files import atomic_torch_save, check_output_file
    from ...runtime.heldout import held_out_images
    from ...runtime.trainer import predict_trainer
    from ...safe_files import file_sha256

    cfg = parse_one_line(build_parser(), argv)
    if cfg.ckpt_path is None:
        raise ZSGuideError("--ckpt_path is required (a checkpoint written by 'python -m zsguide fit' or a prior file)")
    if cfg.denoiser not in DENOISERS:
        raise ZSGuideError(f"unknown --denoiser {cfg.denoiser!r}; choose network or analytic")
    for name in ("draws", "batch_size", "num_times"):
        if cfg[name] < 1:
            raise ZSGuideError(f"--{name} must be >= 1, got {cfg[name]}")
    if cfg.num_images is not None and cfg.num_images < 2 * GROUPS:
        raise ZSGuideError(
            f"--num_images must be >= {2 * GROUPS} (the standard errors come from {GROUPS} groups "
            f"of images), got {cfg.num_images}"
        )
    if cfg.output:
        check_output_file(cfg.output, "--output")  # writable now, not after the images are streamed
    module, meta = load_score_module(cfg.ckpt_path)
    module.surrogate.require_fitted()
    T = module.schedule.num_timesteps
    timesteps = (
        list(cfg.timesteps) if cfg.timesteps else default_timesteps(module.schedule.alphas_cumprod, cfg.num_times)
    )
    bad = [t for t in timesteps if not 0 <= int(t) < T]
    if bad or len(set(timesteps)) != len(timesteps):
        raise ZSGuideError(f"--timesteps must be distinct integers in 0 .. {T - 1}, got {timesteps}")
    image_shape = checkpoint_image_shape(meta)
    data_options, images, indices = held_out_images(
        meta,
        image_shape,
        num_images=cfg.num_images,
        data=cfg.data,
        ckpt_path=cfg.ckpt_path,
        batch_size=cfg.batch_size,
    )
    if len(indices) < 2 * GROUPS:
        raise ZSGuideError(
            f"the calibration needs at least {2 * GROUPS} held-out images, the test split has {len(indices)}"
        )
    sha = file_sha256(cfg.ckpt_path)
    output = Path(cfg.output) if cfg.output else check_output_file(calibration_path(cfg.ckpt_path, cfg.denoiser, sha))
    strategy = str(cfg.trainer.strategy)
    if any(word in strategy for word in ("spawn", "fork", "notebook")):
        raise ZSGuideError(
            f"--trainer.strategy {strategy!r}: the calibration runs with 'ddp' (or 'auto'); spawned "
            f"processes cannot return the sums"
        )
    trainer = predict_trainer(
        [], needs_grad=False, root=output.parent, use_distributed_sampler=False, **cfg.trainer.as_dict()
    )
    run = Calibrate(module, images, cfg.batch_size, cfg.denoiser, timesteps, cfg.draws, cfg.seed)
    trainer.predict(run, return_predictions=False)
    signals.check()  # stopped by SIGTERM or SIGINT at the end of the run: no output file
    if not trainer.is_global_zero:
        return
    r = run.response
    assert r is not None  # set by every rank's on_predict_epoch_end
    content = {
        "zsguide": {
            "kind": KIND,
            "checkpoint": str(cfg.ckpt_path),
            "checkpoint_sha256": sha,
            "denoiser": cfg.denoiser,
            "surrogate_digest": module.surrogate.digest(),
            "data": {k: v for k, v in data_options.items() if k != "batch_size"},
            "num_images": r.num_images,
            "draws": r.draws,
            "groups": r.groups,
            "seed": int(cfg.seed),
            "devices": trainer.world_size,
        }
    } | r.to_dict()
    atomic_torch_save(content, output)
    wiener = r.wiener_gain(module.surrogate)
    ratio = (r.gain / wiener)[wiener > 0.1]  # where the Wiener denoiser keeps a tenth of the input or more
    rank_zero_info(
        f"zsguide: calibration written to {output} ({len(timesteps)} times, {r.num_images} images x "
        f"{r.draws} draws; gain / Wiener gain where the latter is > 0.1: median "
        f"{float(ratio.median()):.3f}, 10-90% {float(ratio.quantile(0.1)):.3f} .. "
        f"{float(ratio.quantile(0.9)):.3f})"
    )
