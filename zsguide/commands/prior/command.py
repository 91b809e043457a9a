"""``python -m zsguide prior``: load a pretrained network strictly, fit the Gaussian surrogate from images on 1..N
devices, write a prior file (:mod:`zsguide.prior_file`).

Surrogate fit: the same streamed float64 sums as ``fit`` (:class:`~zsguide.surrogate.SpectrumAccumulator`), here in
Lightning's predict loop, whose distributed sampler gives each image to exactly one rank; the sums are all-reduced, so
1 and N devices give the same spectrum up to float64 summation order (tested to 1e-12 relative). Only images are
held in memory one batch at a time: a folder of any size streams (``FolderDataset`` decodes lazily).

Everything a user can get wrong (the network file, the architecture, the data, the output path) is checked before the
first image is read; the file is written by rank 0 only, through a temporary file and a rename.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_info

from ...diffusion.schedule import VPSchedule
from ...errors import ZSGuideError
from ...prior_file import prior_checkpoint
from ...runtime import signals
from ...runtime.files import atomic_torch_save, check_output_file
from ...runtime.trainer import quiet_trainer
from ...surrogate import GaussianSurrogate, SpectrumAccumulator
from .options import parse


class SurrogateFit(L.LightningModule):
    """Streams images through :class:`SpectrumAccumulator`; the sums are all-reduced at the end of the epoch."""

    def __init__(self, image_shape: tuple[int, int, int], floor: float) -> None:
        super().__init__()
        self.acc = SpectrumAccumulator(*image_shape)
        self.floor = floor
        self.result: tuple[torch.Tensor, torch.Tensor] | None = None
        self.count = 0

        self.failure: str | None = None

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        if batch["image"].numel():
            self.acc.update(2 * batch["image"] - 1)

    def on_predict_epoch_end(self) -> None:
        """All-reduce the sums and a failure count (so every rank reaches the collective, and every rank learns
        that one of them failed to read an image)."""
        packed = torch.cat([self.acc.state(), torch.tensor([float(self.failure is not None)], dtype=torch.float64)])
        if self.trainer.world_size > 1:
            packed = self.trainer.strategy.reduce(packed.to(self.device), reduce_op="sum").cpu()
        if self.failure is not None:
            raise ZSGuideError(self.failure)
        if packed[-1] > 0:
            raise ZSGuideError("an image could not be read on another device (its error is printed above)")
        self.acc.load_state(packed[:-1])
        self.count = int(packed[0])
        self.result = self.acc.finish(self.floor)


class _SafeImages(torch.utils.data.Dataset):
    """The split's images; an image that fails to decode becomes a recorded failure and a skipped item, so the
    rank still reaches the all-reduce instead of leaving the others waiting in it."""

    def __init__(self, images, fit: SurrogateFit) -> None:
        self.images, self.fit = images, fit

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        try:
            return self.images[index]
        except ZSGuideError as exc:
            self.fit.failure = self.fit.failure or str(exc)
            return None


def _collate(items: list):
    items = [it for it in items if it is not None]
    return torch.utils.data.default_collate(items) if items else {"image": torch.zeros(0)}


def _schedule(cfg) -> VPSchedule | None:
    given = {k: v for k, v in (cfg.schedule or {}).items() if v is not None}
    return VPSchedule(**given) if given else None


def run_prior(argv: list[str]) -> None:
    cfg = parse(argv)
    from ...data import ImageDataModule
    from ...networks import load_network

    for option in ("network", "arch", "output"):
        if cfg[option] is None:
            raise ZSGuideError(f"--{option} is required (python -m zsguide prior --help)")
    output = check_output_file(cfg.output, "--output")  # writable now, not after the images are streamed
    strategy = str(cfg.trainer.strategy)
    if any(word in strategy for word in ("spawn", "fork", "notebook")):
        raise ZSGuideError(
            f"--trainer.strategy {strategy!r}: the surrogate fit runs with 'ddp' (or 'auto'); "
            f"spawned processes cannot return the fitted sums"
        )
    if cfg.batch_size < 1:
        raise ZSGuideError(f"--batch_size must be >= 1, got {cfg.batch_size}")
    if not cfg.spectrum_floor > 0:
        raise ZSGuideError(f"--spectrum_floor must be > 0, got {cfg.spectrum_floor}")
    schedule = _schedule(cfg)
    if schedule is not None and cfg.arch == "diffusers":
        raise ZSGuideError(
            "--schedule.* applies to ADM files only: a diffusers folder's scheduler_config.json gives its schedule"
        )
    _, network, schedule = load_network(cfg.arch, cfg.network, dict(cfg.adm or {}), schedule)

    data = {k: v for k, v in (cfg.data or {}).items() if v is not None}
    data.setdefault("channels", network["channels"])
    if network["image_size"]:
        data.setdefault("image_size", network["image_size"])
    if "image_size" not in data:
        raise ZSGuideError("the network's config gives no image size: pass --data.image_size")
    if data["channels"] != network["channels"]:
        raise ZSGuideError(
            f"--data.channels {data['channels']} does not match the network's {network['channels']} input channels"
        )
    if data["image_size"] % network["divisor"]:
        raise ZSGuideError(
            f"--data.image_size {data['image_size']} is not a multiple of {network['divisor']}, which "
            f"the network's {network['divisor'].bit_length() - 1} downsamplings need"
        )
    dm = ImageDataModule(**data, batch_size=int(cfg.batch_size))
    images = dm.dataset(cfg.split)  # a missing folder or an unreadable image fails here
    if len(images) < 2:
        raise ZSGuideError(
            f"the {cfg.split} split of data set {data.get('name', 'patches')!r} has {len(images)} "
            f"image(s); the surrogate needs at least 2"
        )

    t = cfg.trainer
    trainer = quiet_trainer(
        output.parent,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        enable_progress_bar=False,
    )
    if trainer.world_size > len(images):
        raise ZSGuideError(
            f"{trainer.world_size} devices for {len(images)} images: every device needs at least "
            f"one image (use fewer --trainer.devices)"
        )
    fit = SurrogateFit(dm.image_shape, float(cfg.spectrum_floor))
    loader = torch.utils.data.DataLoader(
        _SafeImages(images, fit), batch_size=int(cfg.batch_size), shuffle=False, num_workers=0, collate_fn=_collate
    )
    trainer.predict(fit, dataloaders=loader, return_predictions=False)
    signals.check()  # stopped by SIGTERM or SIGINT at the end of the run: no output file
    if not trainer.is_global_zero:
        return
    assert fit.result is not None  # set by every rank's on_predict_epoch_end
    mean, spectrum = fit.result
    surrogate = GaussianSurrogate(*dm.image_shape)
    surrogate.set(mean, spectrum)
    info = {
        "split": cfg.split,
        "images": fit.count,
        "spectrum_floor": float(cfg.spectrum_floor),
        "devices": trainer.world_size,
    }
    atomic_torch_save(prior_checkpoint(surrogate, schedule, network, dict(dm.hparams), info), output)
    rank_zero_info(
        f"zsguide: prior written to {output} ({network['arch']}"
        f"{':' + network['preset'] if network['preset'] else ''}, {network['parameters'] / 1e6:.1f}M "
        f"parameters, images {tuple(dm.image_shape)}, surrogate from {fit.count} {cfg.split} images, "
        f"digest {surrogate.digest()})"
    )
