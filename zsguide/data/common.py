"""Shared image handling: every dataset yields ``{"image": (C, H, W) float32 in [0, 1], "index": int}``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage.color import gray2rgb, rgb2gray, rgba2rgb
from skimage.transform import resize
from skimage.util import img_as_float32
from torch.utils.data import Dataset

from ..errors import ZSGuideError


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """An (H, W[, 3|4]) array as float32 (H, W, channels) in [0, 1]: grey is repeated, colour goes to luminance."""
    img = img_as_float32(img)
    if img.ndim == 3 and img.shape[2] == 4:
        img = rgba2rgb(img).astype(np.float32)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if channels == 1:
        return (rgb2gray(img) if img.ndim == 3 else img)[..., None].astype(np.float32)
    return (gray2rgb(img) if img.ndim == 2 else img).astype(np.float32)


def resize_center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Resize (antialiased) so the shorter side equals ``size``, then crop the centred ``size x size`` square."""
    h, w = img.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        img = resize(img, (nh, nw), anti_aliasing=scale < 1, preserve_range=True).astype(np.float32)
    top, left = (nh - size) // 2, (nw - size) // 2
    return img[top : top + size, left : left + size]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, C) array in [0, 1] to a (C, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


def decode_image(path: str | Path, channels: int, what: str = "image") -> np.ndarray:
    """Read an image file as float32 (H, W, channels) in [0, 1]; any decoder failure is one clear error naming it."""
    from skimage import io as skio

    try:
        img = skio.imread(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user error
        raise ZSGuideError(f"cannot read {what} {str(path)!r}: {type(exc).__name__}: {exc}") from None
    if img.ndim not in (2, 3) or min(img.shape[:2]) < 1:
        raise ZSGuideError(f"{what} {str(path)!r} has unsupported shape {img.shape}")
    return to_channels(img, channels)


class ImageDataset(Dataset):
    """A split of a data set: ``len`` images, item ``i`` is ``{"image": (C, H, W) float in [0, 1], "index": i}``."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        raise NotImplementedError
