"""Random crops of scikit-image's bundled photographs: the embedded default data set (works offline).

The photographs are split by source, so validation and test patches come from photographs never trained on:

- train: astronaut, coffee, hubble_deep_field, immunohistochemistry, retina, rocket (colour); brick, camera, cell,
  clock, coins, grass, gravel, moon (grey, repeated to RGB when ``channels=3``)
- val: chelsea (the cat; ``skimage.data.cat`` is the same picture)
- test: stereo_motorcycle (left view only; the right view is never used)

Synthetic and document images (colorwheel, horse, logo, page, text, microaneurysms) are left out. Each photograph is
also downscaled (antialiased) by every factor in ``scales``, so crops cover coarse and fine structure. Crop ``i`` of
a split (which photograph, which scale, where) comes from the generator seeded by (seed, split, i).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from skimage import data as skdata
from skimage.transform import rescale

from ..errors import ZSGuideError
from ..seeding import image_generator
from .common import ImageDataset, to_channels, to_tensor

PHOTOGRAPHS = {
    "train": (
        "astronaut",
        "coffee",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "rocket",
        "brick",
        "camera",
        "cell",
        "clock",
        "coins",
        "grass",
        "gravel",
        "moon",
    ),
    "val": ("chelsea",),
    "test": ("stereo_motorcycle",),
}


@lru_cache(maxsize=64)
def load_photograph(name: str, channels: int, scale: int) -> np.ndarray:
    """A bundled photograph as float32 (H, W, channels) in [0, 1], downscaled by ``scale``."""
    img = getattr(skdata, name)()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
        img = img[0]
    img = to_channels(img, channels)
    if scale > 1:
        img = rescale(img, 1 / scale, anti_aliasing=True, channel_axis=2).astype(np.float32)
    return np.clip(img, 0, 1)


class PatchDataset(ImageDataset):
    def __init__(self, split: str, length: int, size: int, channels: int, scales: tuple[int, ...], seed: int) -> None:
        self.split, self.length, self.size, self.channels, self.seed = split, length, size, channels, seed
        self.sources = [(name, s) for name in PHOTOGRAPHS[split] for s in scales]
        for name, s in self.sources:
            h, w = load_photograph(name, channels, s).shape[:2]
            if h < size or w < size:
                raise ZSGuideError(
                    f"photograph {name!r} downscaled by {s} is {h}x{w}, smaller than image_size {size}; "
                    f"use smaller data.scales"
                )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        gen = image_generator(self.seed, index, f"patches/{self.split}")
        name, scale = self.sources[int(torch.randint(len(self.sources), (1,), generator=gen))]
        img = load_photograph(name, self.channels, scale)
        h, w = img.shape[:2]
        top = int(torch.randint(h - self.size + 1, (1,), generator=gen))
        left = int(torch.randint(w - self.size + 1, (1,), generator=gen))
        crop = img[top : top + self.size, left : left + self.size]
        return {"image": to_tensor(crop), "index": index}
