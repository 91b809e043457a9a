"""The options of ``python -m zsguide prior`` (jsonargparse; ``--config FILE`` for YAML)."""

from __future__ import annotations

import typing
from typing import Optional, Union

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from ...errors import ZSGuideError, one_line

DESCRIPTION = """Tie a pretrained eps network to a Gaussian surrogate fitted from your images, in one small file.

Reads the network (--arch adm:ffhq_10m, adm:imagenet256_uncond, adm with --adm.*, or diffusers), checks that it loads
strictly, streams the images of --data.* (--split, default train) through the surrogate's spectrum on 1..N devices,
and writes --output: the surrogate, the VP schedule, the image shape, the network's description and its files' paths
and sha256 (checked at every load). Every command that takes --ckpt_path takes the result."""


def build_parser() -> ArgumentParser:
    from ...networks import ARCH_CHOICES
    from ...networks.adm import ADMConfig
    from ...runtime.options import add_data_options

    p = ArgumentParser(prog="python -m zsguide prior", description=DESCRIPTION, exit_on_error=False, default_meta=False)
    p.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")
    p.add_argument(
        "--network",
        type=Optional[str],
        default=None,
        help="the network: an ADM .pt file or a diffusers folder (required)",
    )
    p.add_argument("--arch", type=Optional[str], default=None, help=f"required: {', '.join(ARCH_CHOICES)}")
    hints = typing.get_type_hints(ADMConfig)
    for name in ADMConfig.field_names():
        p.add_argument(
            f"--adm.{name}",
            type=Optional[hints[name]],
            default=None,
            help=f"guided-diffusion create_model argument (default: the preset's, else {getattr(ADMConfig, name)!r})",
        )
    p.add_argument(
        "--schedule.kind",
        type=Optional[str],
        default=None,
        help="ADM only: linear (default, both public checkpoints) or cosine",
    )
    p.add_argument("--schedule.num_timesteps", type=Optional[int], default=None, help="ADM only (default 1000)")
    p.add_argument("--schedule.beta_start", type=Optional[float], default=None, help="ADM only (default 1e-4)")
    p.add_argument("--schedule.beta_end", type=Optional[float], default=None, help="ADM only (default 0.02)")
    add_data_options(
        p,
        "default: ImageDataModule's; image_size and channels default to the network's; images are "
        "decoded in the main process (num_workers is not used)",
    )
    p.add_argument("--split", type=str, default="train", help="the split the surrogate is fitted on (train, val, test)")
    p.add_argument("--spectrum_floor", type=float, default=1e-5, help="lower bound on the spectrum (as fit's)")
    p.add_argument("--batch_size", type=int, default=16, help="images per batch per device while streaming")
    p.add_argument("--output", "-o", type=Optional[str], default=None, help="the prior file to write (required)")
    p.add_argument("--trainer.accelerator", type=str, default="cpu", help="cpu, gpu, auto (the fit is FFTs)")
    p.add_argument("--trainer.devices", type=Union[int, str, list[int]], default=1, help="devices per node")
    p.add_argument(
        "--trainer.strategy",
        type=str,
        default="auto",
        help="auto or ddp (spawned strategies cannot hand the sums back and are refused)",
    )
    p.add_argument("--trainer.num_nodes", type=int, default=1)
    return p


def parse(argv: list[str]) -> Namespace:
    try:
        return build_parser().parse_args(argv)
    except ZSGuideError:
        raise
    except Exception as exc:  # jsonargparse's ArgumentError, YAML errors
        raise ZSGuideError(one_line(str(exc))) from None
