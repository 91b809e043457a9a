"""The output directory of a restore run: names, image files, the metrics table, atomic writes, the grid.

Layout of ``DIR`` (``--output``)::

    restored/00012.png, .npy      the restoration of test image 12 (PNG clipped to [0, 1]; .npy float32, unclipped)
    measurement/00012.png, .npy   its measurement in pixel units, at the measurement's own shape (sr: low resolution)
    truth/00012.png, .npy         the ground truth
    grid.png                      rows of truth | measurement | restoration (the first few images, drawn from
                                  the images kept in memory as they were produced, not from the files)
    metrics.csv                   index, psnr, ssim, mse[, lpips], one row per image, sorted by index
    params.json                   the parameter schedule used, with its provenance
    config.yaml                   the resolved options (re-run with --config DIR/config.yaml)
    summary.json                  written last, and only when every image was written: its presence marks a
                                  complete run

With ``--input`` (a user's own measurement): ``restored/00000.png ...`` one per sample k, ``measurement/input.png``
(the measurement the sampler saw), no ``truth/`` and no ``metrics.csv``.

Measurement images in pixel units: the network sees ``y = A(2 x - 1) + 2 sigma_y n``; since A is linear,
``A(2 x - 1) = 2 A x - A 1``, so the pixel-unit measurement is ``(y + A 1) / 2 = A x + sigma_y n``.

While a run is in progress each device (rank) appends its rows to ``parts/metrics.rank<r>.csv``; rank 0 merges them
after a barrier and removes ``parts/``.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from ...runtime.files import atomic_write_text, image_name, is_temporary, remove_stale_temporaries

IMAGE_DIRS = ("restored", "measurement", "truth")
OWN_FILES = ("summary.json", "metrics.csv", "grid.png", "params.json", "config.yaml")
_OWN_IMAGE = re.compile(r"^(\d{5,}|input)\.(png|npy)$")
GRID_ROWS = 8


def clear_previous(out: Path) -> None:
    """Remove what an earlier run wrote into ``out`` (summary.json first, so the directory is never presented as
    complete meanwhile), and the temporary files an interrupted run left. Only zsguide's own file names are touched;
    other files are left alone. Called by rank 0 holding the output lock (runtime/lock.py): no other run is writing
    into ``out``."""
    out = Path(out)
    if not out.exists():
        return
    for name in OWN_FILES:  # summary.json is first in OWN_FILES
        (out / name).unlink(missing_ok=True)
    remove_stale_temporaries(out)
    for sub in IMAGE_DIRS:
        folder = out / sub
        if folder.is_dir():
            for f in folder.iterdir():
                if f.is_file() and (_OWN_IMAGE.match(f.name) or is_temporary(f.name)):
                    f.unlink()
    shutil.rmtree(out / "parts", ignore_errors=True)


def foreign_images(out: Path, expected: Iterable[int], has_truth: bool) -> list[str]:
    """The image files (zsguide's names) in ``out``'s image folders that are not this run's: what a run's final
    check finds when something else wrote into the folder meanwhile (with the lock held and the folder cleared
    under it, nothing). Dataset mode: ``restored/``, ``measurement/``, ``truth/`` hold the expected indices;
    ``--input``: ``restored/`` the samples, ``measurement/`` only ``input``."""
    out = Path(out)
    stems = {image_name(i) for i in expected}
    allowed = {sub: stems for sub in IMAGE_DIRS} if has_truth else {"restored": stems, "measurement": {"input"}}
    found = []
    for sub in IMAGE_DIRS:
        folder = out / sub
        if folder.is_dir():
            for f in sorted(folder.iterdir()):
                if f.is_file() and _OWN_IMAGE.match(f.name) and f.name.split(".")[0] not in allowed.get(sub, set()):
                    found.append(f"{sub}/{f.name}")
    return found


def save_image(image: torch.Tensor, stem: Path) -> None:
    """``stem.npy`` (float32, values as computed) and ``stem.png`` (clipped to [0, 1], 8 bits) of a (C, H, W) image."""
    from torchvision.utils import save_image as tv_save

    stem.parent.mkdir(parents=True, exist_ok=True)
    arr = image.detach().to("cpu", torch.float32)
    np.save(stem.with_suffix(".npy"), arr.numpy())
    tv_save(arr.clamp(0, 1), stem.with_suffix(".png"))


# ------------------------------------------------------------------------------------------------- metrics tables


def format_value(value: float | None) -> str:
    """A float as its shortest round-trip repr ('' for a missing value)."""
    return "" if value is None else repr(float(value))


def part_path(out: Path, rank: int) -> Path:
    return Path(out) / "parts" / f"metrics.rank{int(rank)}.csv"


def error_path(out: Path, rank: int) -> Path:
    return Path(out) / "parts" / f"error.rank{int(rank)}.txt"


class PartWriter:
    """This rank's rows (``index`` and metric columns), appended and flushed batch by batch."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = ("index", *columns)
        self._fh = open(path, "w", newline="")
        self._csv = csv.writer(self._fh)
        self._csv.writerow(self.columns)

    def write(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self._csv.writerow([int(row["index"]), *(format_value(row.get(c)) for c in self.columns[1:])])
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def read_rows(paths: Iterable[Path]) -> list[dict]:
    """Rows of the part files: ``{"index": int, column: float | None}``."""
    rows = []
    for path in paths:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                rows.append({k: (int(v) if k == "index" else (float(v) if v != "" else None)) for k, v in row.items()})
    return rows


def write_metrics_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """``metrics.csv``: header ``index,<columns>``, rows sorted by index, written atomically."""
    lines = [",".join(("index", *columns))]
    for row in sorted(rows, key=lambda r: r["index"]):
        lines.append(",".join([str(int(row["index"])), *(format_value(row[c]) for c in columns)]))
    atomic_write_text(path, "\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------------------ grid


def grid_indices(expected: Iterable[int]) -> list[int]:
    """The indices the grid shows: the first ``GRID_ROWS`` of the run's expected indices in sorted order."""
    return sorted(int(i) for i in expected)[:GRID_ROWS]


def kept_image(image: torch.Tensor) -> torch.Tensor:
    """A (C, H, W) image as its ``.npy`` file holds it (float32, on the CPU), copied into storage of its own: a view
    into a batch would keep (and, gathered across ranks, send) the whole batch."""
    return image.detach().to("cpu", torch.float32, copy=True)


def _as_image_shape(m: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A measurement displayed at the image size: nearest-neighbour upsampling when its shape differs."""
    if tuple(m.shape[-2:]) != tuple(shape[-2:]):
        m = torch.nn.functional.interpolate(m[None], size=tuple(shape[-2:]), mode="nearest")[0]
    if m.shape[0] != shape[0]:
        m = m.expand(shape[0], -1, -1)
    return m


def write_grid(path: Path, rows: Sequence[Sequence[torch.Tensor]], image_shape: Sequence[int]) -> None:
    """A PNG of ``rows`` (each a list of (C, h, w) images in [0, 1], shown at ``image_shape``), white padding."""
    from torchvision.utils import make_grid
    from torchvision.utils import save_image as tv_save

    ncol = max(len(r) for r in rows)
    tiles = []
    for row in rows:
        cells = [_as_image_shape(t.float(), image_shape).clamp(0, 1) for t in row]
        cells += [torch.ones(tuple(image_shape))] * (ncol - len(cells))
        tiles.extend(cells)
    grid = make_grid(torch.stack(tiles), nrow=ncol, padding=2, pad_value=1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    tv_save(grid, tmp)
    os.replace(tmp, path)
