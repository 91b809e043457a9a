"""One LightningDataModule for every data source, chosen by ``name``.

Every split is deterministic: a function of (name, its options, seed). Items are ``{"image", "index"}`` with images
in [0, 1] pixel units (C, H, W); the training module maps them to the network's [-1, 1].
"""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from ..errors import ZSGuideError
from .common import ImageDataset
from .folder import FolderDataset
from .gaussian import GaussianFieldDataset, gaussian_field_spectrum
from .patches import PatchDataset
from .torchvision_sets import TORCHVISION_SETS, TorchvisionDataset

DATASETS = ("patches", "gaussian", "folder", *TORCHVISION_SETS)
SPLITS = ("train", "val", "test")


class ImageDataModule(L.LightningDataModule):
    """Data for fit, test and restore.

    Args:
        name: one of patches (default: crops of scikit-image photographs), gaussian (synthetic Gaussian fields),
            folder (``root`` holds images), mnist, fashionmnist, cifar10 (torchvision, under ``root``).
        image_size: side of the square images.
        channels: 1 or 3.
        batch_size: images per batch (per device).
        num_workers: DataLoader workers.
        seed: the seed of every split (crop positions, synthetic fields, the train/val permutation).
        n_train, n_val, n_test: split sizes for the synthetic sources (patches, gaussian); n_val also for torchvision.
        scales: patches: downscaling factors of the photographs to crop from.
        amplitude, slope, f0, mean: gaussian: per-pixel std (network units), power-law slope and knee (cycles per
            pixel), mean (network units).
        root: folder or torchvision root directory.
        download: torchvision: download when missing (off: nothing downloads unless asked).
        val_fraction, test_fraction, split_policy: folder: hashed split fractions, or ``all`` for every split.
    """

    def __init__(
        self,
        name: str = "patches",
        image_size: int = 32,
        channels: int = 3,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        n_train: int = 20000,
        n_val: int = 256,
        n_test: int = 512,
        scales: tuple[int, ...] = (1, 2, 4),
        amplitude: float = 0.3,
        slope: float = 2.0,
        f0: float = 0.03125,
        mean: float = 0.0,
        root: str | None = None,
        download: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_policy: str = "hash",
    ) -> None:
        super().__init__()
        if name not in DATASETS:
            raise ZSGuideError(f"unknown data set {name!r} (data.name); choose one of {', '.join(DATASETS)}")
        if channels not in (1, 3):
            raise ZSGuideError(f"data.channels must be 1 or 3, got {channels}")
        if image_size < 4:
            raise ZSGuideError(f"data.image_size must be >= 4, got {image_size}")
        if name in ("folder", *TORCHVISION_SETS) and not root:
            raise ZSGuideError(f"data set {name!r} needs data.root")
        self.save_hyperparameters()
        self._splits: dict[str, ImageDataset] = {}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.hparams["channels"], self.hparams["image_size"], self.hparams["image_size"])

    def true_spectrum(self):
        """The exact spectrum for ``gaussian`` data (None for every other source)."""
        h = self.hparams
        if h["name"] != "gaussian":
            return None
        return gaussian_field_spectrum(h["channels"], h["image_size"], h["amplitude"], h["slope"], h["f0"])

    def dataset(self, split: str) -> ImageDataset:
        """The split's dataset, built once."""
        if split not in SPLITS:
            raise ZSGuideError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if split not in self._splits:
            self._splits[split] = self._build(split)
        return self._splits[split]

    def _build(self, split: str) -> ImageDataset:
        h = self.hparams
        length = {"train": h["n_train"], "val": h["n_val"], "test": h["n_test"]}[split]
        if h["name"] == "gaussian":
            return GaussianFieldDataset(
                length, h["channels"], h["image_size"], h["amplitude"], h["slope"], h["f0"], h["mean"], h["seed"], split
            )
        if h["name"] == "patches":
            return PatchDataset(split, length, h["image_size"], h["channels"], tuple(h["scales"]), h["seed"])
        if h["name"] == "folder":
            return FolderDataset(
                h["root"],
                split,
                h["image_size"],
                h["channels"],
                h["val_fraction"],
                h["test_fraction"],
                h["split_policy"],
            )
        return TorchvisionDataset(
            h["name"], h["root"], split, h["image_size"], h["channels"], h["n_val"], h["seed"], h["download"]
        )

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", ())
        for split in wanted:
            self.dataset(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.hparams["batch_size"],
            shuffle=shuffle,
            num_workers=self.hparams["num_workers"],
            drop_last=shuffle,
            persistent_workers=self.hparams["num_workers"] > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
