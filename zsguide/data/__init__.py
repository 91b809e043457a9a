"""Datamodules: synthetic Gaussian fields, image patches (the embedded default), a folder, torchvision sets."""

from .datamodule import DATASETS, ImageDataModule

__all__ = ["DATASETS", "ImageDataModule"]
