"""MNIST, FashionMNIST and CIFAR10 by name, through torchvision (never downloaded unless ``download=True``).

Images are converted to ``channels`` and resized (antialiased) to ``image_size``. The official training set is split
into train and val by a permutation seeded by ``seed`` (the last ``n_val`` go to val); test is the official test set.

FashionMNIST offline: Debian's ``dataset-fashion-mnist`` package installs the IDX files (``dpkg -L
dataset-fashion-mnist``); gunzip them into ``ROOT/FashionMNIST/raw/`` and pass ``--data.root ROOT``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ZSGuideError
from .common import ImageDataset, resize_center_crop, to_channels, to_tensor

TORCHVISION_SETS = ("mnist", "fashionmnist", "cifar10")


def _load(name: str, root: str, train: bool, download: bool):
    from torchvision import datasets  # imported here: only these data sets need torchvision

    cls = {"mnist": datasets.MNIST, "fashionmnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
    try:
        return cls(root=root, train=train, download=download)
    except RuntimeError as exc:
        raise ZSGuideError(
            f"data set {name!r} not found under data.root={root!r} ({exc}); pass --data.download true to fetch it"
        ) from None


class TorchvisionDataset(ImageDataset):
    def __init__(
        self, name: str, root: str, split: str, size: int, channels: int, n_val: int, seed: int, download: bool
    ) -> None:
        base = _load(name, root, train=split != "test", download=download)
        raw = base.data.numpy() if torch.is_tensor(base.data) else np.asarray(base.data)
        if split == "test":
            self.indices = np.arange(len(raw))
        else:
            perm = torch.randperm(len(raw), generator=torch.Generator().manual_seed(seed)).numpy()
            self.indices = perm[len(raw) - n_val :] if split == "val" else perm[: len(raw) - n_val]
        self.raw, self.size, self.channels = raw, size, channels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        img = to_channels(self.raw[self.indices[index]], self.channels)
        return {"image": to_tensor(np.clip(resize_center_crop(img, self.size), 0, 1)), "index": index}
