"""Inception features for FID, from a local weights file only (torchmetrics' InceptionV3, the torch-fidelity port).

FID (Heusel et al., 2017) is the Frechet distance between Gaussians fitted to the 2048-d pool features of
InceptionV3 for two image sets, ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)``. The features come from
``torchmetrics.image.fid.FrechetInceptionDistance(feature=2048)``'s network, fed as torchmetrics feeds it: images in
``[0, 1]`` mapped to ``uint8`` (``(x * 255).byte()``), grey repeated to RGB, resized to 299 x 299 inside the network.
The distance itself is :func:`zsguide.evaluation.perception.frechet_distance_features` (float64, symmetric PSD square
roots), the same formula as torchmetrics' ``compute`` (checked in tests/test_evaluate.py), which lets per-image
features be stored, resumed, merged across devices and bootstrapped.

Weights: the file torch-fidelity downloads, ``pt_inception-2015-12-05-6726825d.pth`` (a plain state dict), given by
path (``--fid_weights`` or ``$ZSGUIDE_FID_WEIGHTS``); nothing is downloaded. torch-fidelity unpickles a weights file
without restriction, which would run code from a crafted file, so the user's file is read here with
``weights_only=True`` and only a copy of its tensors, written by us into a private temporary file, is handed
to torchmetrics.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from ..errors import ZSGuideError
from ..safe_files import read_tensor_file

FID_ENV = "ZSGUIDE_FID_WEIGHTS"
FID_FEATURES = 2048


def fid_weights_path(explicit: str | os.PathLike | None) -> Path | None:
    """``--fid_weights``, else ``$ZSGUIDE_FID_WEIGHTS``, else None; a path given but missing is an error."""
    from .metrics import local_weights_path

    return local_weights_path(explicit, "--fid_weights", FID_ENV, "FID weights")


def load_inception(path: str | os.PathLike) -> torch.nn.Module:
    """torchmetrics' FID InceptionV3 with the weights of ``path`` (read safely; nothing downloaded), in eval mode."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as exc:  # pragma: no cover - torchmetrics is a core dependency
        raise ZSGuideError(f"FID needs torchmetrics' image extras: {exc}") from None
    state = read_tensor_file(path, what="FID weights file")
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ZSGuideError(
            f"FID weights {str(path)!r} are not a state dict of tensors (expected torch-fidelity's "
            f"pt_inception-2015-12-05-6726825d.pth)"
        )
    with tempfile.TemporaryDirectory(prefix="zsguide-fid-") as tmp:
        copy = Path(tmp) / "inception.pth"
        torch.save(dict(state), copy)  # only tensors, written by us: safe for torch-fidelity's unrestricted load
        try:
            fid = FrechetInceptionDistance(
                feature=FID_FEATURES, normalize=True, feature_extractor_weights_path=str(copy)
            )
        except ModuleNotFoundError as exc:
            raise ZSGuideError(f"FID needs torch-fidelity: pip install 'zsguide[fid]' ({exc})") from None
        except RuntimeError as exc:  # missing / unexpected keys, wrong shapes
            raise ZSGuideError(
                f"FID weights {str(path)!r} do not fit torch-fidelity's InceptionV3: {str(exc).splitlines()[0][:300]}"
            ) from None
    return fid.inception.eval().requires_grad_(False)


def inception_features(net: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(B, 2048)`` float64 pool features of images ``(B, C, H, W)`` in ``[0, 1]`` (clipped; grey to RGB), mapped
    to uint8 exactly as torchmetrics' ``FrechetInceptionDistance(normalize=True).update`` does."""
    x = images.detach().float().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ZSGuideError(f"FID needs grey or RGB images, got {x.shape[1]} channels")
    device = next(net.parameters()).device
    with torch.no_grad():
        return net((x * 255).byte().to(device)).reshape(x.shape[0], -1).to(torch.float64).cpu()
