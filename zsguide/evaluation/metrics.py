"""Per-image restoration metrics (torchmetrics), their means with standard errors, and LPIPS from local weights.

Conventions (README "Conventions"): images in ``[0, 1]`` pixel units, shape ``(B, C, H, W)``; one value per image.

- ``mse``  = mean over pixels and channels of ``(x_hat - x)^2``, in ``[0, 1]`` units.
- ``psnr`` = ``10 log10(1 / mse)`` per image: torchmetrics' ``peak_signal_noise_ratio(data_range=1.0,
  reduction="none", dim=(1, 2, 3))``. With ``dim=None`` torchmetrics would return the PSNR of the error pooled over the
  batch, not the mean of per-image PSNRs that papers report (docs/peers.md).
- ``ssim`` = torchmetrics' ``structural_similarity_index_measure(data_range=1.0, reduction="none")``: Gaussian window
  sigma 1.5 (11 taps), K1 = 0.01, K2 = 0.03 (Wang et al., 2004), channels averaged. torchmetrics reflect-pads the
  borders and averages the SSIM map over the whole image (skimage crops the borders instead, so the two differ
  slightly). Images under 6 pixels a side get a narrower window (the padding must be smaller than the side).
- ``lpips`` = torchmetrics' LPIPS (AlexNet backbone, linear heads shipped with torchmetrics, inputs in ``[0, 1]``), only
  when the AlexNet backbone weights are found locally (never downloaded): see :func:`load_lpips`.

Clipping: restorations of natural images are clipped to ``[0, 1]`` before every metric (what a PNG shows). For data
that are not clipped themselves (the ``gaussian`` fields) :func:`image_metrics` is called with ``clip=False`` so that
``mse`` is the raw error that the closed forms of the spectral analysis predict; the caller records which in its
summary (``"clipped"``).

Everything is computed in float64, one image at a time, so an image's values do not depend on the batch it sat in.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from ..errors import ZSGuideError

LPIPS_ENV = "ZSGUIDE_LPIPS_WEIGHTS"
METRIC_NAMES = ("psnr", "ssim", "mse", "mse_unclipped")


def ssim_sigma(height: int, width: int, preferred: float = 1.5) -> tuple[float, float]:
    """The SSIM Gaussian window's std per axis: ``preferred`` (1.5, Wang et al.), narrowed for tiny images.

    torchmetrics uses ``2 int(3.5 sigma + 0.5) + 1`` taps and reflect padding of half that, which must stay below the
    image side.
    """

    def fit(side: int) -> float:
        if int(3.5 * preferred + 0.5) < side:
            return preferred
        if side < 2:
            raise ZSGuideError(f"images of side {side} are too small for SSIM")
        return (side - 1.5) / 3.5

    return fit(height), fit(width)


def image_metrics(restored: torch.Tensor, truth: torch.Tensor, clip: bool = True) -> dict[str, torch.Tensor]:
    """``{"psnr", "ssim", "mse", "mse_unclipped"}``, each a float64 tensor of shape (B,), for ``(B, C, H, W)``
    images in ``[0, 1]``.

    ``clip``: clip ``restored`` to ``[0, 1]`` first (natural images); False keeps raw values (Gaussian fields).
    ``mse_unclipped`` is the squared error of ``restored`` as computed, never clipped: what the closed forms predict
    (the spectral engine's laws are of the unclipped output), so every comparison of a prediction with a measurement
    uses it; on held-out photographs clipping lowers the MSE by 6-18% (docs/benchmarks.md).
    Images are evaluated one at a time: a vectorised reduction over a batch can round differently from one over a
    single image, and an image's metrics must not depend on the batch (or device count) it was restored in.
    """
    if restored.shape != truth.shape or restored.ndim != 4:
        raise ValueError(f"restored {tuple(restored.shape)} and truth {tuple(truth.shape)} must be equal (B, C, H, W)")
    x_hat_all = restored.detach().to(torch.float64)
    x_all = truth.detach().to(torch.float64)
    unclipped = (x_hat_all - x_all).square().flatten(1).mean(1)
    if clip:
        x_hat_all = x_hat_all.clamp(0.0, 1.0)
    sigma = ssim_sigma(x_all.shape[-2], x_all.shape[-1])
    rows = []
    for j in range(x_all.shape[0]):
        x_hat, x = x_hat_all[j : j + 1], x_all[j : j + 1]
        rows.append(
            (
                peak_signal_noise_ratio(x_hat, x, data_range=1.0, reduction="none", dim=(1, 2, 3)).reshape(()),
                _ssim(x_hat, x, sigma).reshape(()),
                (x_hat - x).square().mean(),
            )
        )
    psnr, ssim, mse = (torch.stack(col) for col in zip(*rows))
    return {"psnr": psnr, "ssim": ssim, "mse": mse, "mse_unclipped": unclipped}


def _ssim(x_hat: torch.Tensor, x: torch.Tensor, sigma: tuple[float, float]) -> torch.Tensor:
    """torchmetrics' SSIM per image (its index only: no full image is asked for)."""
    value = structural_similarity_index_measure(x_hat, x, data_range=1.0, reduction="none", sigma=sigma)
    assert isinstance(value, torch.Tensor)
    return value


def mean_and_se(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error ``std(ddof=1) / sqrt(n)`` of per-image values (SE is None for fewer than 2)."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(vals) / n
    if n < 2:
        return mean, None
    if not all(math.isfinite(v) for v in vals):
        return mean, math.nan
    var = math.fsum((v - mean) ** 2 for v in vals) / (n - 1)
    return mean, math.sqrt(var / n)


# --------------------------------------------------------------------------------------------------------- LPIPS


def lpips_weights_path(explicit: str | os.PathLike | None) -> Path | None:
    """The AlexNet weights file for LPIPS: ``explicit`` (``--lpips_weights``), else ``$ZSGUIDE_LPIPS_WEIGHTS``, else
    None. A path that is given but missing is an error (naming it), not a silent skip."""
    return local_weights_path(explicit, "--lpips_weights", LPIPS_ENV, "LPIPS weights")


def local_weights_path(explicit, option: str, env: str, what: str) -> Path | None:
    """A local weights file: ``explicit`` (the option's value), else the environment variable ``env``, else None
    (the metric is skipped). A path that is given but missing is an error naming it and where it came from."""
    source, value = (option, explicit) if explicit else (env, os.environ.get(env) or None)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ZSGuideError(f"{what} {str(path)!r} ({source}) do not exist")
    return path


def load_lpips(path: str | os.PathLike) -> torch.nn.Module:
    """torchmetrics' LPIPS network (AlexNet) with the backbone read from ``path`` and nothing downloaded.

    ``path`` holds a torchvision AlexNet ``state_dict`` (the file torchvision caches as
    ``alexnet-owt-7be5be79.pth``; ``features.*`` keys are used, ``classifier.*`` ignored). The linear heads are the
    LPIPS v0.1 weights that torchmetrics ships in its package.
    """
    import torchvision
    from torchmetrics.functional.image.lpips import _NoTrainLpips  # the module behind torchmetrics' LPIPS metric

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        backbone = torchvision.models.alexnet(weights=None)
        backbone.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - any unreadable or foreign file is the same user error
        raise ZSGuideError(
            f"cannot read LPIPS weights {str(path)!r} as a torchvision AlexNet state_dict: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    net = _NoTrainLpips(pretrained=True, net="alex", pnet_rand=True)  # heads from torchmetrics, random backbone ...
    for block in (net.net.slice1, net.net.slice2, net.net.slice3, net.net.slice4, net.net.slice5):
        for name, layer in block.named_children():  # ... replaced by the local AlexNet (slice children keep indices)
            layer.load_state_dict(backbone.features[int(name)].state_dict())
    return net.eval().requires_grad_(False)


def lpips_min_side() -> int:
    """AlexNet's five stages need images of at least 32 pixels a side (the second max-pool fails below)."""
    return 32


def lpips_per_image(net: torch.nn.Module, restored: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """LPIPS per image (B,) for images in ``[0, 1]``; ``restored`` is clipped to ``[0, 1]``, grey is repeated to RGB."""
    a = restored.detach().float().clamp(0, 1)
    b = truth.detach().float().clamp(0, 1)
    if a.shape[1] == 1:
        a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
    return net(a, b, normalize=True).reshape(-1).to(torch.float64)
