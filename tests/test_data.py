"""Datamodules: determinism, the split by photograph, folder handling and the clear errors."""

import numpy as np
import pytest
import torch
from skimage import io as skio

from zsguide.data import ImageDataModule
from zsguide.data.patches import PHOTOGRAPHS
from zsguide.errors import ZSGuideError


def test_patch_splits_use_disjoint_photographs():
    names = [set(PHOTOGRAPHS[s]) for s in ("train", "val", "test")]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert "cat" not in names[0]  # skimage's cat is chelsea, the validation photograph


def test_patches_are_deterministic_and_in_range():
    a = ImageDataModule(name="patches", n_train=8, n_test=8, seed=5, scales=(2,))
    b = ImageDataModule(name="patches", n_train=8, n_test=8, seed=5, scales=(2,))
    c = ImageDataModule(name="patches", n_train=8, n_test=8, seed=6, scales=(2,))
    x = a.dataset("test")[3]["image"]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(x, b.dataset("test")[3]["image"])
    assert not torch.equal(x, c.dataset("test")[3]["image"])
    assert not torch.equal(x, a.dataset("test")[4]["image"])


def test_gaussian_items_depend_only_on_seed_split_index():
    dm = ImageDataModule(name="gaussian", image_size=8, n_train=4, n_test=4)
    assert torch.equal(
        dm.dataset("train")[2]["image"], ImageDataModule(name="gaussian", image_size=8).dataset("train")[2]["image"]
    )
    assert not torch.equal(dm.dataset("train")[2]["image"], dm.dataset("test")[2]["image"])
    assert dm.true_spectrum().shape == (3, 8, 8)


def test_folder_grey_and_colour_any_size(tmp_path):
    rng = np.random.default_rng(0)
    skio.imsave(tmp_path / "a.png", (rng.random((40, 60, 3)) * 255).astype(np.uint8), check_contrast=False)
    skio.imsave(tmp_path / "b.png", (rng.random((50, 20)) * 255).astype(np.uint8), check_contrast=False)
    skio.imsave(tmp_path / "c.jpg", (rng.random((33, 33, 3)) * 255).astype(np.uint8), check_contrast=False)
    for channels in (1, 3):
        dm = ImageDataModule(name="folder", root=str(tmp_path), image_size=16, channels=channels, split_policy="all")
        ds = dm.dataset("test")
        assert len(ds) == 3
        for i in range(3):
            x = ds[i]["image"]
            assert x.shape == (channels, 16, 16) and 0 <= float(x.min()) and float(x.max()) <= 1


def test_folder_errors(tmp_path):
    with pytest.raises(ZSGuideError, match="does not exist"):
        ImageDataModule(name="folder", root=str(tmp_path / "missing")).dataset("train")
    with pytest.raises(ZSGuideError, match="holds no images"):
        ImageDataModule(name="folder", root=str(tmp_path)).dataset("train")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with pytest.raises(ZSGuideError, match="broken.png"):
        ImageDataModule(name="folder", root=str(tmp_path), split_policy="all").dataset("train")


def test_unknown_names_and_options():
    with pytest.raises(ZSGuideError, match="unknown data set 'imagenet'"):
        ImageDataModule(name="imagenet")
    with pytest.raises(ZSGuideError, match="needs data.root"):
        ImageDataModule(name="mnist")
    with pytest.raises(ZSGuideError, match="channels"):
        ImageDataModule(channels=2)


def test_torchvision_missing_without_download(tmp_path):
    with pytest.raises(ZSGuideError, match="not found under data.root"):
        ImageDataModule(name="fashionmnist", root=str(tmp_path)).dataset("test")
