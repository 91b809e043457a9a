"""``python -m zsguide test --ckpt_path PRIOR``: the denoise check (:mod:`zsguide.diffusion.denoise_check`) of a prior
file's pretrained network against its Gaussian surrogate, on the test split of the data the surrogate was fitted on
(``--data.*`` overrides them). Writes ``denoise_check.json`` into ``--output``. Run it on one device: Lightning's test
loop pads uneven shards with duplicates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import lightning as L
from jsonargparse import ArgumentParser

from ...diffusion.denoise_check import DenoiseCheck
from ...errors import ZSGuideError, one_line
from ...runtime.files import check_output_dir
from ...runtime.trainer import quiet_trainer


class PriorCheck(DenoiseCheck, L.LightningModule):
    """The denoise check's host for a :class:`~zsguide.prior_file.PriorModule`."""

    def __init__(self, prior, check_sigmas: tuple[float, ...] = (0.1, 0.3, 1.0), check_seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["prior"])
        self.prior = prior

    @property
    def surrogate(self):
        return self.prior.surrogate

    @property
    def schedule(self):
        return self.prior.schedule

    @property
    def alphas_cumprod(self):
        return self.prior.alphas_cumprod

    def network_denoiser(self):
        return self.prior.network_denoiser()

    def analytic_denoiser(self):
        return self.prior.analytic_denoiser()


def build_parser() -> ArgumentParser:
    from ...runtime.options import add_data_options

    p = ArgumentParser(
        prog="python -m zsguide test",
        exit_on_error=False,
        default_meta=False,
        description="Denoise check of a prior file's network against its Gaussian surrogate.",
    )
    p.add_argument("--ckpt_path", type=str, help="a prior file written by 'python -m zsguide prior'")
    add_data_options(p, "default: the data the prior's surrogate was fitted on")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--check_sigmas", type=list[float], default=[0.1, 0.3, 1.0], help="VE noise levels (network units)")
    p.add_argument("--check_seed", type=int, default=0)
    p.add_argument("--num_images", type=Optional[int], default=None, help="the first N test images (default: all)")
    p.add_argument("--output", "-o", type=Optional[str], default=None, help="default runs/test/<prior file name>")
    p.add_argument("--trainer.accelerator", type=str, default="auto")
    p.add_argument("--trainer.devices", type=Union[int, str, list[int]], default=1)
    p.add_argument("--trainer.precision", type=Optional[Union[int, str]], default="32-true")
    return p


def run_prior_test(argv: list[str]) -> None:
    from torch.utils.data import DataLoader

    from ...checkpoint import image_shape as checkpoint_image_shape
    from ...checkpoint import load_score_module
    from ...runtime.heldout import held_out_images

    try:
        cfg = build_parser().parse_args(argv)
    except Exception as exc:  # noqa: BLE001 - jsonargparse's errors, as one line
        raise ZSGuideError(one_line(str(exc))) from None
    if any(s <= 0 for s in cfg.check_sigmas):
        raise ZSGuideError(f"--check_sigmas must be > 0, got {cfg.check_sigmas}")
    if cfg.output:
        check_output_dir(cfg.output, "--output")
    module, meta = load_score_module(cfg.ckpt_path)
    image_shape = checkpoint_image_shape(meta)
    _, images, _ = held_out_images(
        meta,
        image_shape,
        num_images=cfg.num_images,
        data=cfg.data,
        ckpt_path=cfg.ckpt_path,
        batch_size=cfg.batch_size,
    )
    output = check_output_dir(cfg.output or Path("runs") / "test" / Path(cfg.ckpt_path).stem, "--output")
    t = cfg.trainer
    trainer = quiet_trainer(output, accelerator=t.accelerator, devices=t.devices, precision=t.precision)
    check = PriorCheck(module, tuple(cfg.check_sigmas), int(cfg.check_seed))
    trainer.test(check, dataloaders=DataLoader(images, batch_size=int(cfg.batch_size)), verbose=False)
