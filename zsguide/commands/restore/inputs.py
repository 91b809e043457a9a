"""A user's own measurement (``--input``): reading it and mapping it to the network's units.

The file holds the measurement in pixel units ``y_pix = A x + sigma_y n`` (x in [0, 1]): a degraded image of the
image size for inpainting and deblurring, the low-resolution image for super-resolution. PNG / JPEG / BMP / TIFF are
converted to the checkpoint's channels (grey repeated, colour to luminance, as the data modules do); ``.npy`` holds
``(h, w)``, ``(1, h, w)`` or ``(C, h, w)`` float values and is used as is (no 8-bit rounding). It is never resized:
its size must be the measurement size of the task on the checkpoint's images. Values must be finite and lie in
[0, 1] widened by the noise, ``8 sigma_y + 0.01`` (:func:`zsguide.restoration.check_measurement`; inpainting's missing
pixels are not looked at): an ``.npy`` of 50.0 is refused with the range found.

Network units: :func:`zsguide.restoration.to_network_units` (``y = U U^T (2 y_pix - A 1)``; for inpainting that
zeroes the missing pixels, whatever the file holds in them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ...data.common import decode_image
from ...errors import ZSGuideError
from ...operators.base import LinearOperator
from ...restoration import check_measurement


def read_input(path: str | Path, channels: int) -> torch.Tensor:
    """The measurement in ``path`` as a float32 (C, h, w) tensor in pixel units."""
    path = Path(path)
    if not path.is_file():
        raise ZSGuideError(f"input file {str(path)!r} does not exist (--input)")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise ZSGuideError(f"cannot read input {str(path)!r}: {type(exc).__name__}: {exc}") from None
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[0] not in (1, channels) or arr.dtype.kind not in "fiu":
            raise ZSGuideError(
                f"input {str(path)!r} holds an array of shape {arr.shape} and dtype {arr.dtype}; "
                f"expected (h, w), (1, h, w) or ({channels}, h, w) numbers"
            )
        out = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).expand(channels, -1, -1).clone()
    else:
        out = torch.from_numpy(np.ascontiguousarray(decode_image(path, channels, "input image").transpose(2, 0, 1)))
    if not torch.isfinite(out).all():
        raise ZSGuideError(f"input {str(path)!r} holds NaN or infinite values")
    return out.float()


def check_input_shape(y_pix: torch.Tensor, operator: LinearOperator, path: str | Path, task: str) -> None:
    """The input must have the operator's measurement shape exactly (it is never resized)."""
    want = tuple(operator.measurement_shape)
    if tuple(y_pix.shape) != want:
        h, w = operator.image_shape[1:]
        raise ZSGuideError(
            f"input {str(path)!r} is {y_pix.shape[1]}x{y_pix.shape[2]}, but task {task!r} on the checkpoint's "
            f"{h}x{w} images measures {want[1]}x{want[2]} (the input is not resized)"
        )


def check_input_values(y_pix: torch.Tensor, operator: LinearOperator, path: str | Path, sigma_net: float) -> None:
    """The input's values must be a measurement in pixel units (module docstring): one line naming the file and the
    range found otherwise."""
    check_measurement(y_pix, operator, sigma_net, what=f"input {str(path)!r}")


class InputSamples(Dataset):
    """``num_samples`` items ``{"measurement": y (network units, float32), "index": k}``: sample k uses index k."""

    def __init__(self, y_net: torch.Tensor, num_samples: int) -> None:
        self.y = y_net.reshape(y_net.shape[-3:]).to(torch.float32)
        self.n = int(num_samples)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> dict:
        if not 0 <= k < self.n:
            raise IndexError(k)
        return {"measurement": self.y, "index": k}
