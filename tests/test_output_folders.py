"""Output folders under concurrency and reruns, and output paths checked before any work (docs/reliability.md,
"Concurrency"): restore's lock (the one evaluate takes, runtime/lock.py), a rerun replacing an earlier run's files
only under the lock, evaluate's exit status 3 when a cell failed, runs.json's entries of interrupted runs, stale
temporary files removed, and every command's ``--output`` refused with one line when it cannot be written.

Runs on the shipped 32x32 checkpoint (checkpoints/patches32.ckpt) with 2 steps of the analytic denoiser, in this
process; one real concurrent restore runs as a subprocess.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from zsguide.cli import main
from zsguide.commands.restore.outputs import foreign_images
from zsguide.errors import ZSGuideError
from zsguide.runtime.files import atomic_write_text, check_output_dir, check_output_file, remove_stale_temporaries
from zsguide.runtime.lock import OutputLock, launch_rank_is_zero
from zsguide.samplers import SAMPLERS, Knob
from zsguide.samplers.base import Sampler, ddim_from_estimate

from .cli_helpers import ROOT

CKPT = ROOT / "checkpoints" / "patches32.ckpt"
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu")
RESTORE = ("restore", "--ckpt_path", CKPT, "--task", "sr4", "--sampler", "ddrm", "--steps", "2")
RESTORE += ("--denoiser", "analytic", *QUIET)


def run(capsys, *args) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def error_line(err: str) -> str:
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "Traceback" not in err
    return line


def stems(folder: Path) -> set[str]:
    return {p.name.split(".")[0] for p in folder.iterdir()}


# ---------------------------------------------------------------------------------------------------- the lock


@pytest.mark.parametrize(
    "env,zero",
    [
        ({}, True),
        ({"LOCAL_RANK": "1"}, False),  # Lightning's DDP children, torchrun's local ranks
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"RANK": "2", "LOCAL_RANK": "0"}, False),  # torchrun, another node's first rank
        ({"SLURM_NTASKS": "4", "SLURM_PROCID": "3"}, False),
        ({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"}, True),
    ],
)
def test_only_global_rank_zero_takes_the_lock(monkeypatch, env, zero):
    for name in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launch_rank_is_zero() is zero


@pytest.mark.parametrize("holder", ["restore", "evaluate"])
def test_a_restore_into_a_locked_folder_refuses_and_touches_nothing(tmp_path, capsys, holder):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "summary.json").write_text("{}")  # a holder's files are left alone
    lock = OutputLock(out, holder)  # as a running restore or evaluate holds it
    try:
        rc, err = run(capsys, *RESTORE, "--num_images", "2", "--output", out)
        assert rc == 2
        line = error_line(err)
        assert f"is in use by another {holder} run (pid {os.getpid()} on {socket.gethostname()}, since" in line
        assert str(out) in line
        assert sorted(p.name for p in out.iterdir()) == [".lock", "summary.json"]
    finally:
        lock.release()
    rc, err = run(capsys, *RESTORE, "--num_images", "2", "--output", out)  # free once the holder is gone
    assert rc == 0, err[-2000:]
    assert json.loads((out / "summary.json").read_text())["complete"] is True


def test_an_evaluate_into_a_folder_restore_holds_refuses(tmp_path, capsys):
    out = tmp_path / "busy"
    lock = OutputLock(out, "restore")
    try:
        rc, err = run(capsys, "evaluate", *EVALUATE, "--output", out)
        assert rc == 2
        assert f"in use by another restore run (pid {os.getpid()}" in error_line(err)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    finally:
        lock.release()


def test_bad_input_leaves_no_folder_behind_the_lock(tmp_path, capsys):
    out = tmp_path / "new"
    rc, err = run(capsys, *RESTORE, "--num_images", "999", "--output", out)  # refused after the lock is taken
    assert rc == 2 and "--num_images 999" in error_line(err)
    assert not out.exists()


@pytest.mark.slow  # a real restore process (about 15 s on two loaded cores)
def test_two_restores_into_one_folder_the_second_refuses_the_first_completes(tmp_path, capsys):
    """The issue's case: one run into a folder, a second one started into the same folder while it runs."""
    out = tmp_path / "out"
    first = ["restore", "--ckpt_path", str(CKPT), "--task", "sr4", "--sampler", "ddrm", "--steps", "6"]
    first += ["--denoiser", "network", "--batch_size", "1", "--num_images", "4", "--seed", "0", *QUIET]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, "-m", "zsguide", *first, "--output", str(out)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        holder = f"restore run (pid {proc.pid} "
        while proc.poll() is None and time.monotonic() < deadline:
            if (out / ".lock").is_file() and (out / ".lock").read_text().startswith(holder):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the first run ended before the second started"
        rc, err = run(capsys, *RESTORE, "--num_images", "4", "--seed", "1", "--output", out)
        assert rc == 2 and f"in use by another restore run (pid {proc.pid} on {socket.gethostname()}" in error_line(err)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["num_images"] == 4 and summary["seed"] == 0
    names = {f"{i:05d}" for i in range(4)}
    for sub in ("restored", "measurement", "truth"):
        assert stems(out / sub) == names


# ---------------------------------------------------------------------------------------------------- reruns


def test_a_rerun_replaces_the_earlier_runs_files(tmp_path, capsys):
    """40-then-24 in small: 4 images of seed 0, then 2 images of seed 1 into the same folder; the second run's
    folder holds only its own images, metrics and summary; the temporary files an interrupted write left are gone;
    files that are not zsguide's are kept."""
    out = tmp_path / "out"
    rc, err = run(capsys, *RESTORE, "--num_images", "4", "--seed", "0", "--output", out)
    assert rc == 0, err[-2000:]
    assert stems(out / "restored") == {"00000", "00001", "00002", "00003"}
    (out / ".summary.json.k3j2x.tmp").write_text("half")  # an atomic write killed before its rename
    (out / "restored" / ".00009.png.tmp.png").write_bytes(b"")
    (out / "restored" / "00007.png").write_bytes(b"")  # an earlier run's index this run does not make
    (out / "notes.txt").write_text("mine")
    rc, err = run(capsys, *RESTORE, "--num_images", "2", "--seed", "1", "--output", out)
    assert rc == 0, err[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["num_images"] == 2 and summary["seed"] == 1
    for sub in ("restored", "measurement", "truth"):
        assert stems(out / sub) == {"00000", "00001"}
    assert (out / "metrics.csv").read_text().count("\n") == 3  # header and two rows
    assert not (out / ".summary.json.k3j2x.tmp").exists() and (out / "notes.txt").read_text() == "mine"
    assert not (out / "restored" / ".00009.png.tmp.png").exists()


def test_the_final_check_finds_images_of_another_run(tmp_path):
    for sub in ("restored", "measurement", "truth"):
        (tmp_path / sub).mkdir()
        for i in (0, 1):
            (tmp_path / sub / f"{i:05d}.png").write_bytes(b"")
    assert foreign_images(tmp_path, [0, 1], has_truth=True) == []
    (tmp_path / "restored" / "00005.npy").write_bytes(b"")
    (tmp_path / "restored" / "notes.txt").write_bytes(b"")  # not a zsguide name: not counted
    assert foreign_images(tmp_path, [0, 1], has_truth=True) == ["restored/00005.npy"]
    (tmp_path / "measurement" / "input.png").write_bytes(b"")
    found = foreign_images(tmp_path, [0, 1], has_truth=False)  # --input: measurement/ holds input.* only, no truth/
    assert found == [
        "restored/00005.npy",
        "measurement/00000.png",
        "measurement/00001.png",
        "truth/00000.png",
        "truth/00001.png",
    ]


def test_stale_temporaries_are_recognised_by_name(tmp_path):
    names = [".runs.json.a1b2.tmp", ".00012.png.999.tmp.png", ".grid.png.tmp.png", "runs.json", "a.tmp", ".keep"]
    for name in names:
        (tmp_path / name).write_text("")
    removed = remove_stale_temporaries(tmp_path)
    assert removed == [".00012.png.999.tmp.png", ".grid.png.tmp.png", ".runs.json.a1b2.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep", "a.tmp", "runs.json"]


# ---------------------------------------------------------------------------------------------------- evaluate

EVALUATE = ("--ckpt_path", CKPT, "--grid.tasks", "[sr4]", "--grid.steps", "[2]", "--grid.params", "[heuristic]")
EVALUATE += ("--grid.sigma_y", "[0.02]", "--num_images", "2", "--batch_size", "2", "--denoiser", "analytic")
EVALUATE += ("--bootstrap", "0", *QUIET)


class AlwaysNaN(Sampler):
    """DDIM on the denoiser's estimate, except that the estimate turns NaN at step 1: the NaN guard fails the batch."""

    name = "always_nan"
    knob_specs = (Knob("eta", "unit"),)

    def heuristic_values(self, task, steps):
        return {"eta": 0.0}

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        x0 = denoiser(x, t)
        if i == 1:
            x0 = torch.full_like(x0, float("nan"))
        return ddim_from_estimate(x, x0, a_t, a_prev, 0.0, lambda: noise("z")), x0


def test_evaluate_exits_3_when_a_cell_failed_after_writing_its_report(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(SAMPLERS, "always_nan", AlwaysNaN())
    out = tmp_path / "grid"
    rc, err = run(capsys, "evaluate", *EVALUATE, "--grid.samplers", "[ddrm, always_nan]", "--output", out)
    assert rc == 3
    assert not [ln for ln in err.splitlines() if ln.startswith("error:")] and "Traceback" not in err
    assert "1 cell(s) failed (always_nan/sr4/" in err and "exit status 3" in err
    cells = {c["sampler"]: c for c in json.loads((out / "cells.json").read_text())["cells"]}
    assert cells["always_nan"]["status"] == "failed" and cells["ddrm"]["status"] == "complete"
    assert (out / "report.md").is_file() and (out / "cells.csv").is_file() and (out / "results.csv").is_file()
    (entry,) = json.loads((out / "runs.json").read_text())["runs"]
    assert entry["status"] == "complete" and entry["failed_cells"] == [cells["always_nan"]["key"]]
    rc, err = run(capsys, "evaluate", *EVALUATE, "--grid.samplers", "[ddrm]", "--output", tmp_path / "ok")
    assert rc == 0, err[-2000:]


def test_runs_json_marks_a_dead_run_interrupted_and_stale_temporaries_go(tmp_path, capsys, monkeypatch):
    """A run killed mid-grid leaves its runs.json entry ``running`` and perhaps a temporary file of an atomic write:
    the next run (holding the lock, so the earlier process is gone) marks the entry interrupted and removes them.
    An error after the start is recorded as such."""
    out = tmp_path / "grid"
    rc, err = run(capsys, "evaluate", *EVALUATE, "--grid.samplers", "[ddrm]", "--output", out)
    assert rc == 0, err[-2000:]
    runs = json.loads((out / "runs.json").read_text())["runs"]
    runs.append({"command": "python -m zsguide evaluate ...", "started": "2026-01-01 00:00:00", "number": 2})
    runs[-1]["status"] = "running"  # what a run killed with kill -9 leaves
    (out / "runs.json").write_text(json.dumps({"runs": runs}))
    stale = [out / ".runs.json.x7y8.tmp", out / ".report.md.abcd.tmp", out / "figures" / ".pd_sr4.png.77.tmp.png"]
    for path in stale:
        path.write_text("half")
    rc, err = run(capsys, "evaluate", *EVALUATE, "--grid.samplers", "[ddrm]", "--output", out)
    assert rc == 0, err[-2000:]
    runs = json.loads((out / "runs.json").read_text())["runs"]
    assert [(r["number"], r["status"]) for r in runs] == [(1, "complete"), (2, "interrupted"), (3, "complete")]
    assert runs[1]["started"] == "2026-01-01 00:00:00"
    assert not any(p.exists() for p in stale)
    assert "interrupted" in (out / "report.md").read_text()
    from zsguide.commands.evaluate import report

    def broken(*args, **kwargs):
        raise ZSGuideError("the disk is full")

    monkeypatch.setattr(report, "write_report", broken)
    rc, err = run(capsys, "evaluate", *EVALUATE, "--grid.samplers", "[ddrm]", "--output", out)
    assert rc == 2 and "the disk is full" in error_line(err)
    last = json.loads((out / "runs.json").read_text())["runs"][-1]
    assert last["number"] == 4 and last["status"] == "error" and last["error"] == "the disk is full"


# ---------------------------------------------------------------------------------------------------- output paths


def command_lines(tmp_path: Path) -> dict[str, list]:
    """Each command with its output option as ``{out}``, the rest valid up to that check."""
    return {
        "restore": [*RESTORE, "--num_images", "2", "--output", "{out}"],
        "evaluate": ["evaluate", *EVALUATE, "--grid.samplers", "[ddrm]", "--output", "{out}"],
        "prior": ["prior", "--network", tmp_path / "net.pt", "--arch", "adm", "--output", "{out}/prior.pt"],
        "calibrate": ["calibrate", "--ckpt_path", CKPT, "--output", "{out}/calibration.pt"],
        "analyze": ["analyze", "--ckpt_path", CKPT, "--task", "sr4", "--output", "{out}"],
        "tune": ["tune", "--ckpt_path", CKPT, "--task", "sr4", "--sampler", "ddrm", "--output", "{out}/params.json"],
    }


@pytest.mark.parametrize("command", ["restore", "evaluate", "prior", "calibrate", "analyze", "tune"])
@pytest.mark.parametrize("where", ["under a file", "unwritable"])
def test_an_output_that_cannot_be_written_is_one_line_before_any_work(tmp_path, capsys, command, where):
    (tmp_path / "file.txt").write_text("a file")
    out = tmp_path / "file.txt" / "sub" if where == "under a file" else Path("/proc/zsguide-test/sub")
    args = [str(a).replace("{out}", str(out)) for a in command_lines(tmp_path)[command]]
    t0 = time.perf_counter()
    rc, err = run(capsys, *args)
    assert rc == 2
    line = error_line(err)
    assert "--output" in line and str(out) in line, line
    reason = f"{str(tmp_path / 'file.txt')!r} is a file" if where == "under a file" else "nothing can be created"
    assert reason in line, line
    assert "GPU available" not in err  # refused before a Trainer was made
    assert time.perf_counter() - t0 < 10


def test_output_checks_create_nothing_and_name_the_reason(tmp_path):
    assert check_output_dir(tmp_path / "a" / "b", "--output") == tmp_path / "a" / "b"
    assert check_output_file(tmp_path / "c" / "f.json", "--output") == tmp_path / "c" / "f.json"
    assert sorted(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("")
    with pytest.raises(ZSGuideError, match="exists and is not a directory"):
        check_output_dir(tmp_path / "f", "--output")
    with pytest.raises(ZSGuideError, match="is a directory; give a file's path"):
        check_output_file(tmp_path, "--output")
    with pytest.raises(ZSGuideError, match="--out '.*f/x/y.json' cannot be written: '.*f' is a file, not a folder"):
        check_output_file(tmp_path / "f" / "x" / "y.json", "--out")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomically_written_files_get_a_new_files_mode(tmp_path, umask):
    """summary.json, metrics.csv, prior and calibration files (atomic writes through mkstemp) get the mode a plain
    open() gives a new file under the process's umask, like the images beside them, not mkstemp's 0o600."""
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "atomic.json", "{}")
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    mode = (tmp_path / "atomic.json").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.json").stat().st_mode & 0o777 == 0o666 & ~umask
