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


MAX_PIXELS = 1 << 26  # 67,108,864 pixels (8192 x 8192): the largest image decoded whole (about 0.8 GB as float32 RGB)
# Modes Pillow maps to RGB itself (colour conversions without an alpha channel), the alpha modes composited over
# white, and the integer/float grey modes scaled by their type's range.
TO_RGB = {"RGB": "RGB", "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
TO_RGBA = {"RGBA": "RGBA", "RGBa": "RGBA", "PA": "RGBA"}
TO_GREY = {"1": "L", "L": "L"}
TO_GREY_ALPHA = {"LA": "LA", "La": "LA"}
UINT16 = ("I;16", "I;16L", "I;16B", "I;16N")
DECODED_MODES = (*TO_GREY, *TO_RGB, "P", *TO_RGBA, *TO_GREY_ALPHA, *UINT16, "I", "F")


def _refuse_mode(path: str | Path, what: str, mode: str) -> ZSGuideError:
    return ZSGuideError(
        f"{what} {str(path)!r} has image mode {mode!r}, which zsguide does not decode (it decodes "
        f"{', '.join(DECODED_MODES)}); convert it to RGB or grey"
    )


def _draft_scale(width: int, height: int, reduce_to: int | None) -> int:
    """The JPEG draft scale (1, 2, 4 or 8) that brings an image under :data:`MAX_PIXELS` while its shorter side stays
    >= ``reduce_to``; 0 when there is none (or no ``reduce_to``)."""
    if reduce_to is None:
        return 0
    for k in (1, 2, 4, 8):
        if (width // k) * (height // k) <= MAX_PIXELS and min(width, height) // k >= reduce_to:
            return k
    return 0


def check_image_header(img, path: str | Path, what: str = "image", reduce_to: int | None = None) -> None:
    """Refuse, from a Pillow image's header alone (nothing decoded), a mode zsguide cannot map and an image over
    :data:`MAX_PIXELS` pixels, unless it is a JPEG that ``reduce_to`` lets the decoder shrink (:func:`decode_image`)."""
    if img.mode not in DECODED_MODES:
        raise _refuse_mode(path, what, img.mode)
    width, height = img.size
    if width < 1 or height < 1:
        raise ZSGuideError(f"{what} {str(path)!r} has unsupported size {width}x{height}")
    if width * height > MAX_PIXELS and not (img.format == "JPEG" and _draft_scale(width, height, reduce_to) > 0):
        raise ZSGuideError(
            f"{what} {str(path)!r} is {width}x{height} ({width * height:,} pixels), over zsguide's bound of "
            f"{MAX_PIXELS:,} pixels; downscale it first"
        )


def _composite_over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha colour + (1 - alpha) 1`` in [0, 1] (scikit-image's ``rgba2rgb`` with its white background)."""
    if colour.ndim == 3:
        return rgba2rgb(np.concatenate([colour, alpha[..., None]], axis=2)).astype(np.float32)
    return np.clip((1 - alpha) + alpha * colour, 0, 1).astype(np.float32)


def _pil_to_float(img, path: str | Path, what: str) -> np.ndarray:
    """A Pillow image (header checked) as float32 (H, W) or (H, W, 3) in [0, 1], by its mode:

    - ``1`` (bilevel, 0 or 1) and ``L`` (8-bit grey): grey;
    - ``RGB``, ``RGBX``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: Pillow's conversion to RGB (CMYK: ``R = (1 - C)(1 -
      K)``, what ``Image.convert("RGB")`` does; Adobe's inverted CMYK JPEGs are un-inverted by Pillow's decoder);
    - ``P`` (palette): its colours, with its transparency as alpha when it has one;
    - alpha (``RGBA``, ``LA``, ``PA`` and premultiplied ``RGBa``, ``La``, and ``P`` with transparency): composited
      over a white background, ``alpha colour + (1 - alpha)``;
    - ``I;16*`` (16-bit grey): divided by 65535; ``I`` (32-bit signed grey): divided by 2**31 - 1, negative values
      refused; ``F`` (32-bit float grey): taken as is, values outside [0, 1] or non-finite refused.
    """
    mode = img.mode
    if mode == "P":
        mode = "PA" if "transparency" in img.info else "RGB"
        img = img.convert("RGBA" if mode == "PA" else "RGB")
    if mode in TO_GREY:
        return img_as_float32(np.asarray(img.convert(TO_GREY[mode])))
    if mode in TO_RGB:
        return img_as_float32(np.asarray(img.convert(TO_RGB[mode])))
    if mode in TO_RGBA or mode in TO_GREY_ALPHA:
        arr = img_as_float32(np.asarray(img.convert(TO_RGBA.get(mode) or TO_GREY_ALPHA[mode])))
        return _composite_over_white(arr[..., :-1] if arr.shape[2] == 4 else arr[..., 0], arr[..., -1])
    arr = np.asarray(img)
    if mode in UINT16:
        return img_as_float32(arr.astype(np.uint16))  # / 65535
    if mode == "I":
        if arr.min() < 0:
            raise ZSGuideError(
                f"{what} {str(path)!r} (mode 'I', 32-bit signed grey) holds negative values (min {int(arr.min())})"
            )
        return (arr.astype(np.float64) / (2**31 - 1)).astype(np.float32)
    if mode == "F":
        return _checked_float(arr.astype(np.float32), path, what, "mode 'F', 32-bit float grey")
    raise _refuse_mode(path, what, img.mode)


def _checked_float(arr: np.ndarray, path: str | Path, what: str, kind: str) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise ZSGuideError(f"{what} {str(path)!r} ({kind}) holds NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 1:
        raise ZSGuideError(f"{what} {str(path)!r} ({kind}) holds values in [{lo:.4g}, {hi:.4g}], outside [0, 1]")
    return arr


def _decode_tiff(path: Path, what: str) -> np.ndarray:
    """A TIFF Pillow cannot open (16-bit RGB, say), read with tifffile: grey or RGB (with an alpha channel, composited
    over white), integers divided by their type's maximum, floats checked to lie in [0, 1]."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        photometric = getattr(page.photometric, "name", str(page.photometric))
        shape = tuple(page.shape)
        if photometric not in ("MINISBLACK", "RGB"):
            raise ZSGuideError(
                f"{what} {str(path)!r} is a TIFF with photometric {photometric}, which zsguide does not decode; "
                f"convert it to RGB or grey"
            )
        if len(shape) < 2 or shape[0] * shape[1] > MAX_PIXELS:
            raise ZSGuideError(f"{what} {str(path)!r} has shape {shape}: over {MAX_PIXELS:,} pixels or not an image")
        arr = page.asarray()
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ZSGuideError(f"{what} {str(path)!r} has unsupported shape {arr.shape}")
    if arr.dtype.kind == "f":
        img = _checked_float(arr.astype(np.float32), path, what, f"float TIFF, {arr.dtype}")
    elif arr.dtype.kind in "ub":
        img = img_as_float32(arr)
    else:
        raise ZSGuideError(f"{what} {str(path)!r} is a TIFF of {arr.dtype} values, which zsguide does not decode")
    if img.ndim == 3 and img.shape[2] in (2, 4):
        img = _composite_over_white(img[..., :-1] if img.shape[2] == 4 else img[..., 0], img[..., -1])
    return img


def decode_image(path: str | Path, channels: int, what: str = "image", reduce_to: int | None = None) -> np.ndarray:
    """Read an image file as float32 (H, W, channels) in [0, 1], by its mode (:func:`_pil_to_float`); any decoder
    failure, a mode zsguide cannot map and an image over :data:`MAX_PIXELS` pixels (read from the header, before
    decoding) are one error line naming the file. ``reduce_to`` (the folder data set's image size): a larger JPEG is
    decoded at 1/2, 1/4 or 1/8 scale (Pillow's ``draft``, in the decoder) so that it stays under the bound with its
    shorter side >= ``reduce_to``."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            check_image_header(img, path, what, reduce_to)
            width, height = img.size
            if width * height > MAX_PIXELS:  # a JPEG (check_image_header): shrink it in the decoder
                k = _draft_scale(width, height, reduce_to)
                img.draft(img.mode, (-(-width // k), -(-height // k)))
            img.load()
            out = _pil_to_float(img, path, what)
    except ZSGuideError:
        raise
    except UnidentifiedImageError:
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise ZSGuideError(f"cannot read {what} {str(path)!r}: not an image file Pillow can identify") from None
        try:
            out = _decode_tiff(path, what)
        except ZSGuideError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user error
            raise ZSGuideError(f"cannot read {what} {str(path)!r}: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure (truncated, corrupt) is the same user error
        raise ZSGuideError(f"cannot read {what} {str(path)!r}: {type(exc).__name__}: {exc}") from None
    return to_channels(out, channels)


class ImageDataset(Dataset):
    """A split of a data set: ``len`` images, item ``i`` is ``{"image": (C, H, W) float in [0, 1], "index": i}``."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        raise NotImplementedError
