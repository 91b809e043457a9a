"""Reading user-supplied masks and kernels (.npy, or PNG for masks), with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zsguide.errors import ZSGuideError


def load_npy(path: str | Path, what: str) -> np.ndarray:
    """A numeric array from a ``.npy`` file (no pickles); ``what`` names the option in error messages."""
    path = Path(path)
    if not path.is_file():
        raise ZSGuideError(f"{what} file {str(path)!r} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ZSGuideError(f"{what} file {str(path)!r} is not a readable .npy array: {err}") from None
    if not isinstance(array, np.ndarray) or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ZSGuideError(f"{what} file {str(path)!r} does not hold a numeric array (dtype {array.dtype})")
    return array


def load_png(path: str | Path, what: str) -> np.ndarray:
    """A PNG as an array (H, W) or (C, H, W) (channels first; an alpha channel is dropped)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ZSGuideError(f"{what} file {str(path)!r} does not exist")
    try:
        with Image.open(path) as opened:
            array = np.asarray(opened.convert("RGBA") if opened.mode in ("P", "PA") else opened)
    except (OSError, UnidentifiedImageError) as err:
        raise ZSGuideError(f"{what} file {str(path)!r} is not a readable image: {err}") from None
    if array.ndim == 3:
        if array.shape[-1] in (2, 4):  # LA / RGBA: drop alpha
            array = array[..., :-1]
        array = np.moveaxis(array, -1, 0)
    return array


def load_array(path: str | Path, what: str) -> np.ndarray:
    """Dispatch on the suffix: ``.npy`` or ``.png``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        return load_npy(path, what)
    if suffix == ".png":
        return load_png(path, what)
    raise ZSGuideError(f"{what} file {str(path)!r} must be a .npy or .png file")
