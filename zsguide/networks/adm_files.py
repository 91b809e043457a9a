"""Reading guided-diffusion (ADM) weight files into :class:`~zsguide.networks.adm.ADMUNet`, strictly.

Accepted layouts (all read with ``torch.load(weights_only=True)``: tensors and plain containers only):

- a raw state dict, as guided-diffusion saves it (``ffhq_10m.pt``, ``256x256_diffusion_uncond.pt``);
- a training checkpoint holding the state dict under ``ema`` (preferred) or ``net`` / ``model`` / ``state_dict``,
  with a ``model.`` or ``module.`` prefix on every key (InverseBench's and DataParallel's files).

A class-conditional file (``label_emb.weight``) is refused: zsguide's samplers are unconditional.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ZSGuideError
from ..safe_files import read_tensor_file
from .adm import ADMConfig, ADMUNet
from .strict import load_strictly

CONTAINER_KEYS = ("ema", "net", "model", "state_dict")  # in order of preference
PREFIXES = ("model.", "module.")


def unwrap_state_dict(obj: object, path: str | Path) -> tuple[dict, str]:
    """The network's state dict inside ``obj`` and a note of where it was (``"raw"``, ``"ema"``, ``"net/model."``)."""
    where = "raw"
    if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in CONTAINER_KEYS:
            if isinstance(obj.get(key), dict):
                obj, where = obj[key], key
                break
        else:
            raise ZSGuideError(
                f"network file {str(path)!r} is neither a state dict nor a checkpoint holding one under "
                f"{', '.join(repr(k) for k in CONTAINER_KEYS)} (top-level keys: "
                f"{', '.join(map(str, list(obj)[:8]))})"
            )
    if not isinstance(obj, dict) or not obj:
        raise ZSGuideError(f"network file {str(path)!r} holds no state dict")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
            where += f"/{prefix}"
            break
    return state, where


def load_adm(path: str | Path, config: ADMConfig, arch_label: str) -> tuple[ADMUNet, str]:
    """An :class:`ADMUNet` of ``config`` with the weights of ``path`` (eval mode) and where the weights were found."""
    state, where = unwrap_state_dict(read_tensor_file(path, mmap=True), path)
    if "label_emb.weight" in state:
        raise ZSGuideError(
            f"network file {str(path)!r} is class-conditional (label_emb.weight: "
            f"{state['label_emb.weight'].shape[0]} classes); zsguide's samplers need an unconditional "
            f"network such as 256x256_diffusion_uncond.pt or ffhq_10m.pt"
        )
    net = ADMUNet(config)
    out = state.get("out.2.weight")
    hint = ""
    if out is not None and out.shape[0] != config.out_channels:
        if out.shape[0] == 2 * config.in_channels:
            hint = "the file predicts eps and a variance (6 channels): add --adm.learn_sigma true"
        elif out.shape[0] == config.in_channels:
            hint = "the file predicts eps only: add --adm.learn_sigma false"
    load_strictly(net, state, f"network file {str(path)!r} read as {arch_label}", hint)
    return net.eval(), where
