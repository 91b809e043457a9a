"""The output directory of an evaluation: a lock, one folder per cell, and one committed file per (cell, image).

Layout of ``DIR`` (``--output``)::

    .lock                       held (flock) by the running evaluation's rank 0; a second run refuses
    config.yaml, runs.json      the options of the last run; a record of every run (command, devices, time,
                                status: entered when a run starts, completed when it ends; report.py)
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

The lock (runtime/lock.py, the same as restore's) is an advisory ``fcntl.flock`` on ``DIR/.lock``: the kernel releases
it when the process ends, also after ``kill -9``, so a crashed run never blocks the next; the file records the
holder's command, pid, host and start time for the error message. Holding it, rank 0 removes the temporary files an
interrupted run left at the top of ``DIR`` and in ``figures/`` (:func:`remove_stale_files`), and
:func:`prepare_cell_folder` those in the cells' folders.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from ...runtime.files import (
    atomic_write_bytes,
    atomic_write_text,
    image_name,
    json_safe,
    remove_stale_temporaries,
    write_json,
)


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


def remove_stale_files(out: Path) -> list[str]:
    """Remove the temporary files of earlier, interrupted runs at the top of ``out`` (``.runs.json.*.tmp``, the
    report's) and in ``figures/``; call it holding the lock. The names removed, relative to ``out``."""
    out = Path(out)
    removed = remove_stale_temporaries(out)
    removed += [f"figures/{name}" for name in remove_stale_temporaries(out / "figures")]
    return removed


# --------------------------------------------------------------------------------------------------------- runs.json

RUNS_FILE = "runs.json"
RUN_STATUSES = ("running", "complete", "interrupted", "error")


def read_runs(out: Path) -> list[dict]:
    """The runs recorded in ``DIR/runs.json`` (oldest first); a file that cannot be read is kept aside as
    ``runs.json.unreadable`` and the record starts again."""
    path = Path(out) / RUNS_FILE
    if not path.is_file():
        return []
    try:
        runs = json.loads(path.read_text())["runs"]
        if isinstance(runs, list) and all(isinstance(r, dict) for r in runs):
            return runs
    except (ValueError, KeyError, TypeError):
        pass
    os.replace(path, path.with_name(RUNS_FILE + ".unreadable"))
    return []


def write_runs(out: Path, runs: list[dict]) -> None:
    write_json(Path(out) / RUNS_FILE, {"runs": runs})


def start_run(out: Path, run_info: dict) -> int:
    """Enter a run in runs.json as ``running`` when it starts (rank 0, holding the lock) and return its number (1,
    2, ... in the folder). An earlier entry still ``running`` belongs to a run that ended without completing it (killed,
    or its machine lost): the lock being free proves its process is gone, so it is marked ``interrupted``."""
    runs = read_runs(out)
    for r in runs:
        if r.get("status") == "running":
            r["status"] = "interrupted"
    number = max((int(r.get("number", 0) or 0) for r in runs), default=0) + 1
    number = max(number, len(runs) + 1)
    runs.append(json_safe(run_info) | {"number": number, "status": "running"})
    write_runs(out, runs)
    return number


def runs_with(out: Path, run_info: dict) -> list[dict]:
    """runs.json's entries with this run's entry (by its ``number``) replaced by ``run_info`` (appended when it is
    not there); nothing is written."""
    entry = json_safe(run_info)
    runs = read_runs(out)
    for i, r in enumerate(runs):
        if "number" in entry and r.get("number") == entry["number"]:
            runs[i] = entry
            break
    else:
        runs.append(entry)
    return runs


def end_run(out: Path, run_info: dict, status: str, error: str | None = None) -> None:
    """Complete this run's entry with a final ``status`` (``interrupted``, ``error`` with its line) when it stopped
    before its report; best effort (the run's own exception is what matters)."""
    try:
        runs = read_runs(out)
        for r in runs:
            if r.get("number") == run_info.get("number") and r.get("status") == "running":
                r["status"] = status
                if error is not None:
                    r["error"] = error
                write_runs(out, runs)
                return
    except OSError:
        pass
