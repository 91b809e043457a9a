"""The output directory of an evaluation: a lock, one folder per cell, and one committed file per (cell, image).

Layout of ``DIR`` (``--output``)::

    .lock                       held (flock) by the running evaluation's rank 0; a second run refuses
    config.yaml, runs.json      the options of the last run; a record of every run (command, devices, time)
    cells/<folder>/cell.json    the cell's settings (what its results depend on) and its parameter schedule
    cells/<folder>/items/00012.npz   image 12's result: metrics, spectral features (FD), Inception features
                                (FID, when asked), seconds, and for the first ``--examples`` images the
                                restoration and the measurement; written to a temporary file and renamed, so a
                                file that exists is complete
    cells/<folder>/restored/00012.png   the restoration (``--save_images``), written before the item is committed
    cells/<folder>/failures/00012.txt   a sampler failure of the batch starting at image 12 (e.g. a NaN), retried on
                                the next run
    results.csv, cells.csv, cells.json, report.md, figures/   the report (report.py), rebuilt at the end
    clean_inception.npz         the clean images' Inception features (FID), cached

A cell's folder name ends in the digest of its settings (grid.py), so a changed setting (a different design, noise
level, checkpoint, precision, ...) gives a new folder and only that cell is recomputed; results never depend on
``--batch_size``, the number of devices or an interruption, so none of those are settings. Only global rank 0 holds
the lock: the ranks of other nodes keep going for a while if rank 0 is killed, until their next collective.

The lock is an advisory ``fcntl.flock`` on ``DIR/.lock``: the kernel releases it when the process ends, also after
``kill -9``, so a crashed run never blocks the next; the file records the holder's pid, host and start time for the
error message.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import socket
import time
from pathlib import Path

import numpy as np

from ...errors import ZSGuideError
from ...runtime.files import atomic_write_bytes, atomic_write_text, image_name, json_safe


class OutputLock:
    """``flock(DIR/.lock, LOCK_EX | LOCK_NB)`` for as long as this object lives (or until :meth:`release`)."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / ".lock"
        for _ in range(10):  # a holder may remove the file (remove_lock_only_dir) between our open and our flock
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a+")  # noqa: SIM115 - held open for the run's lifetime
            try:
                fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._fh.seek(0)
                holder = self._fh.read().strip() or "unknown process"
                self._fh.close()
                raise ZSGuideError(
                    f"output directory {str(out)!r} is in use by another evaluate run ({holder}); "
                    f"wait for it to finish or choose another --output"
                ) from None
            try:
                if os.fstat(self._fh.fileno()).st_ino == os.stat(self.path).st_ino:
                    break  # we hold the lock on the file that is there
            except FileNotFoundError:
                pass
            self._fh.close()
        else:  # pragma: no cover - ten removals in a row
            raise ZSGuideError(f"could not lock {str(self.path)!r}: it keeps being removed")
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        self._fh.flush()

    def release(self, remove_empty_dir: bool = False) -> None:
        """Unlock; with ``remove_empty_dir``, first (still holding the lock) remove the lock file and the directory
        if nothing else is in it (a run that stopped on bad input before writing anything leaves nothing)."""
        if self._fh.closed:
            return
        out = self.path.parent
        if remove_empty_dir and {p.name for p in out.iterdir()} <= {".lock"}:
            self.path.unlink(missing_ok=True)
            out.rmdir()
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


def items_dir(out: Path, folder: str) -> Path:
    return Path(out) / "cells" / folder / "items"


def committed(out: Path, folder: str) -> set[int]:
    """The image indices whose results are committed in the cell's folder."""
    d = items_dir(out, folder)
    if not d.is_dir():
        return set()
    return {int(p.name[:-4]) for p in os.scandir(d) if p.name.endswith(".npz") and p.name[:-4].isdigit()}


def commit_item(out: Path, folder: str, index: int, arrays: dict[str, np.ndarray]) -> None:
    """Write image ``index``'s result atomically (temporary file, fsync, rename): it exists whole or not at all."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    atomic_write_bytes(items_dir(out, folder) / f"{image_name(index)}.npz", buf.getvalue())


def read_item(out: Path, folder: str, index: int) -> dict[str, np.ndarray]:
    path = items_dir(out, folder) / f"{image_name(index)}.npz"
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def record_failure(out: Path, folder: str, first_index: int, message: str) -> None:
    atomic_write_text(Path(out) / "cells" / folder / "failures" / f"{image_name(first_index)}.txt", message)


def failures(out: Path, folder: str) -> list[str]:
    d = Path(out) / "cells" / folder / "failures"
    return [p.read_text().strip() for p in sorted(d.glob("*.txt"))] if d.is_dir() else []


def prepare_cell_folder(out: Path, folder: str, record: dict) -> None:
    """Create the cell's folder with its ``cell.json``, clear its recorded failures (they are retried) and remove
    temporary files an interrupted commit left behind."""
    base = Path(out) / "cells" / folder
    (base / "items").mkdir(parents=True, exist_ok=True)
    path = base / "cell.json"
    text = json.dumps(json_safe(record), indent=2, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)
    for sub in ("items", "restored", "failures"):
        d = base / sub
        if d.is_dir():
            for p in d.iterdir():
                if ".tmp" in p.name or (sub == "failures" and p.suffix == ".txt"):
                    p.unlink(missing_ok=True)
