"""A diffusers ``UNet2DModel`` folder as an eps network, loaded strictly (the optional extra ``zsguide[diffusers]``).

Layouts: a model folder (``config.json``, ``diffusion_pytorch_model.safetensors`` or ``.bin``,
``scheduler_config.json``; e.g. ``google/ddpm-ema-celebahq-256`` as ``save_pretrained`` writes it) or a pipeline folder
with ``unet/`` and ``scheduler/`` subfolders. Nothing is downloaded: the network is built from ``config.json`` with
``UNet2DModel.from_config`` and the weights are loaded with :func:`~zsguide.networks.strict.load_strictly` (diffusers'
own ``from_pretrained`` fills missing weights with random values and only warns).

The scheduler must be the VP schedule zsguide samples with: eps prediction, ``beta_schedule`` ``linear`` or
``squaredcos_cap_v2`` (cosine), no ``trained_betas``, and its ``alphas_cumprod`` (float32, as diffusers computes them)
equal to :class:`~zsguide.diffusion.schedule.VPSchedule`'s within float32 rounding (relative 1e-5); anything else is
refused with the reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..diffusion.schedule import VPSchedule
from ..errors import ZSGuideError
from ..safe_files import read_tensor_file
from .eps import EpsOutput
from .strict import load_strictly

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
# Schedulers whose config describes a discrete VP (DDPM) training schedule by its betas; VE ones (ScoreSdeVe,
# KarrasVe) and anything else are refused.
VP_SCHEDULERS = (
    "DDPMScheduler",
    "DDIMScheduler",
    "PNDMScheduler",
    "DDPMParallelScheduler",
    "DDIMParallelScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "DEISMultistepScheduler",
    "UniPCMultistepScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
)
SCHEDULE_KINDS = {"linear": "linear", "squaredcos_cap_v2": "cosine"}
ALPHAS_RTOL = 1e-5


def _import_diffusers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub, even by accident
    os.environ.setdefault("DIFFUSERS_NO_ADVISORY_WARNINGS", "1")
    try:
        import diffusers
    except ImportError:
        raise ZSGuideError("--arch diffusers needs the diffusers package: pip install -e '.[diffusers]'") from None
    return diffusers


def folder_files(root: str | Path) -> dict[str, Path]:
    """``{"config", "weights", "scheduler"}``: the three files of a diffusers folder (model or pipeline layout)."""
    root = Path(root)
    if not root.is_dir():
        raise ZSGuideError(f"diffusers folder {str(root)!r} does not exist or is not a directory (--network)")
    unet, sched = (root / "unet", root / "scheduler") if (root / "unet" / "config.json").is_file() else (root, root)
    files = {"config": unet / "config.json", "scheduler": sched / "scheduler_config.json"}
    weights = [unet / name for name in WEIGHT_FILES if (unet / name).is_file()]
    if not weights:
        raise ZSGuideError(f"diffusers folder {str(root)!r} has no {' or '.join(WEIGHT_FILES)} in {str(unet)!r}")
    files["weights"] = weights[0]
    for key in ("config", "scheduler"):
        if not files[key].is_file():
            raise ZSGuideError(
                f"diffusers folder {str(root)!r} has no {files[key].name} (expected {str(files[key])!r})"
            )
    return files


def read_json(path: Path) -> dict:
    try:
        out = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ZSGuideError(f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(out, dict):
        raise ZSGuideError(f"{str(path)!r} is not a JSON object")
    return out


def schedule_from_scheduler(config: dict, path: Path) -> VPSchedule:
    """The :class:`VPSchedule` a diffusers scheduler config describes, checked against diffusers' own numbers."""
    where = f"scheduler {str(path)!r}"
    name = config.get("_class_name")
    if name not in VP_SCHEDULERS:
        raise ZSGuideError(
            f"{where} is a {name}; zsguide needs a discrete VP (DDPM-type) scheduler "
            f"({', '.join(VP_SCHEDULERS[:3])}, ...)"
        )
    prediction = config.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        raise ZSGuideError(f"{where} has prediction_type {prediction!r}; zsguide needs an eps-prediction model")
    if config.get("trained_betas") is not None:
        raise ZSGuideError(f"{where} uses trained_betas; zsguide supports the linear and cosine VP schedules only")
    kind = config.get("beta_schedule", "linear")
    if kind not in SCHEDULE_KINDS:
        raise ZSGuideError(
            f"{where} has beta_schedule {kind!r}; zsguide supports "
            f"{' and '.join(SCHEDULE_KINDS)} (the linear and cosine VP schedules of DDPM)"
        )
    ours = VPSchedule(
        int(config.get("num_train_timesteps", 1000)),
        SCHEDULE_KINDS[kind],
        float(config.get("beta_start", 1e-4)),
        float(config.get("beta_end", 0.02)),
    )
    diffusers = _import_diffusers()
    try:
        theirs = diffusers.DDPMScheduler.from_config(config).alphas_cumprod.to(torch.float64)
    except Exception as exc:  # noqa: BLE001 - a config diffusers itself rejects
        raise ZSGuideError(f"{where}: diffusers cannot build it: {type(exc).__name__}: {exc}") from None
    ref = ours.alphas_cumprod
    err = float(((theirs - ref).abs() / ref).max())
    if theirs.shape != ref.shape or err > ALPHAS_RTOL:
        raise ZSGuideError(
            f"{where}: its alphas_cumprod differ from the {ours.kind} VP schedule by {err:.2e} "
            f"(relative; float32 rounding is below {ALPHAS_RTOL:g}); not a DDPM schedule zsguide "
            f"can sample"
        )
    return ours


def load_diffusers(files: dict[str, Path]) -> tuple[EpsOutput, dict, VPSchedule]:
    """The network of a diffusers folder's files (:func:`folder_files`, or the paths a prior file recorded; eval
    mode), its ``config.json`` and its checked VP schedule."""
    files = {k: Path(v) for k, v in files.items()}
    config = read_json(files["config"])
    schedule = schedule_from_scheduler(read_json(files["scheduler"]), files["scheduler"])
    name = config.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise ZSGuideError(f"{str(files['config'])!r} describes a {name}; zsguide loads UNet2DModel folders")
    if config.get("class_embed_type") or config.get("num_class_embeds"):
        raise ZSGuideError(
            f"{str(files['config'])!r} is class-conditional; zsguide's samplers need an unconditional network"
        )
    if config.get("time_embedding_type", "positional") != "positional":
        raise ZSGuideError(
            f"{str(files['config'])!r} has time_embedding_type {config['time_embedding_type']!r} (a "
            f"continuous-time score model); zsguide needs a DDPM eps network with integer t"
        )
    diffusers = _import_diffusers()
    try:
        unet = diffusers.UNet2DModel.from_config(config)
    except Exception as exc:  # noqa: BLE001
        raise ZSGuideError(
            f"cannot build UNet2DModel from {str(files['config'])!r}: {type(exc).__name__}: {exc}"
        ) from None
    if files["weights"].suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(files["weights"]))
        except Exception as exc:  # noqa: BLE001
            raise ZSGuideError(
                f"cannot read network file {str(files['weights'])!r}: {type(exc).__name__}: {exc}"
            ) from None
    else:
        loaded = read_tensor_file(files["weights"])
        if not isinstance(loaded, dict):
            raise ZSGuideError(
                f"network file {str(files['weights'])!r} holds a {type(loaded).__name__}, not a state dict"
            )
        state = loaded
    load_strictly(unet, state, f"network file {str(files['weights'])!r} read as UNet2DModel({str(files['config'])!r})")
    channels = int(config.get("in_channels", 3))
    out = int(config.get("out_channels", channels))
    if out not in (channels, 2 * channels):
        raise ZSGuideError(
            f"{str(files['config'])!r}: out_channels {out} is neither in_channels ({channels}, eps) "
            f"nor twice it (eps and variance)"
        )
    return EpsOutput(unet.eval(), channels, "sample"), config, schedule
