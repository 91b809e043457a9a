"""A user's folder of images (PNG / JPEG / BMP / TIFF; grey or colour; any size).

Policy: every image is decoded by its mode (data/common.py ``decode_image``: CMYK, palette, 16-bit grey, alpha over
white, ...) and converted to ``channels`` (grey repeated to RGB, colour to luminance), resized (antialiased) so
its shorter side equals ``image_size``, and centre-cropped to a square. Files are sorted by name and assigned to
train / val / test by a stable hash of the file name (``val_fraction``, ``test_fraction``), so adding files never
moves existing ones between splits; ``split_policy="all"`` puts every file in every split (for restoring a folder of
test images with a checkpoint trained elsewhere).

Streaming: every file's header is checked when the split is set up (so a missing, empty or foreign file fails before
any work, with its path in the message), and images are decoded when they are read, so a folder of any size streams
in constant memory. Decoded images are kept while they fit in ``CACHE_BYTES`` (small training sets are decoded once,
not once per epoch). A file that fails to decode later is still one error naming it. An image over
``MAX_PIXELS`` (67,108,864) pixels is refused by its header, except a JPEG, which is decoded at 1/2, 1/4 or 1/8 scale
(Pillow's ``draft``) when that keeps its shorter side >= ``image_size``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import ZSGuideError
from .common import ImageDataset, check_image_header, decode_image, resize_center_crop, to_tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _bucket(name: str) -> float:
    """A stable number in [0, 1) from a file name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") / 2**64


def list_split(root: str | Path, split: str, val_fraction: float, test_fraction: float, policy: str) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise ZSGuideError(f"data folder {str(root)!r} does not exist or is not a directory (data.root)")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ZSGuideError(f"data folder {str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if policy == "all":
        return files
    if policy != "hash":
        raise ZSGuideError(f"unknown data.split_policy {policy!r}; choose 'hash' or 'all'")

    def which(p: Path) -> str:
        b = _bucket(p.name)
        return "test" if b < test_fraction else "val" if b < test_fraction + val_fraction else "train"

    chosen = [p for p in files if which(p) == split]
    if not chosen:
        raise ZSGuideError(
            f"data folder {str(root)!r}: the {split} split is empty ({len(files)} images, val_fraction="
            f"{val_fraction}, test_fraction={test_fraction}); add images or use data.split_policy=all"
        )
    return chosen


def read_image(path: Path, channels: int, size: int) -> np.ndarray:
    out = resize_center_crop(decode_image(path, channels, reduce_to=size), size)
    if not np.isfinite(out).all():
        raise ZSGuideError(f"image {str(path)!r} holds non-finite values")
    return np.clip(out, 0, 1)


def check_header(path: Path, size: int | None = None) -> None:
    """Open the file's header with Pillow (no decoding); a missing, empty or foreign file, a mode zsguide does not
    decode and an image over the pixel bound that cannot be shrunk while decoding (data/common.py ``MAX_PIXELS``;
    JPEGs are decoded at a reduced scale instead) are one clear error. TIFF files that Pillow cannot open
    (multi-channel 16-bit, say) are decoded by tifffile instead."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            check_image_header(img, path, "image", size)
            img.verify()
    except ZSGuideError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user error
        if path.suffix.lower() in (".tif", ".tiff"):
            decode_image(path, 1)  # raises the same one-line error if tifffile cannot read it either
            return
        raise ZSGuideError(f"cannot read image {str(path)!r}: {type(exc).__name__}: {exc}") from None


CACHE_BYTES = 1 << 30  # decoded images kept in memory, at most


class FolderDataset(ImageDataset):
    def __init__(
        self, root: str, split: str, size: int, channels: int, val_fraction: float, test_fraction: float, policy: str
    ) -> None:
        self.files = list_split(root, split, val_fraction, test_fraction, policy)
        for p in self.files:
            check_header(p, size)
        self.size, self.channels = size, channels
        self._cache: dict[int, object] = {}
        self._cache_limit = CACHE_BYTES // (4 * channels * size * size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        image = self._cache.get(index)
        if image is None:
            image = to_tensor(read_image(self.files[index], self.channels, self.size))
            if len(self._cache) < self._cache_limit:
                self._cache[index] = image
        return {"image": image, "index": index}
