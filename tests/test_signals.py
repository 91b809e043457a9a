"""SIGTERM, SIGINT and kill -9 (docs/reliability.md, "Signals and crashes"): a signalled run stops within a sampler
step with exit status 143 (130 for SIGINT) and one line, leaving a consistent folder (restore: no summary.json, no
temporary file; evaluate: its committed images, from which the same command resumes); the ranks of a DDP run die with
their launcher, ``kill -9`` included; more CPU processes than cores are refused before any is started.

The runs are ``python -m zsguide`` subprocesses on the shipped 32x32 checkpoint, signalled once their predict loop
has started (the writer's first file), never after a blind sleep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zsguide.cli import main
from zsguide.errors import ZSGuideError
from zsguide.runtime import signals

from .cli_helpers import ROOT, error_lines

CKPT = ROOT / "checkpoints" / "patches32.ckpt"
CPU = ("--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false")
# the network denoiser for many steps: seconds per image, so a run is always signalled in the middle
SLOW_RESTORE = ("--task", "sr4", "--sampler", "ddrm", "--steps", "400", "--num_images", "2", "--batch_size", "1",
                "--denoiser", "network", "--ckpt_path", str(CKPT), *CPU)  # fmt: skip


STARTED: list[int] = []  # process groups started by a test: killed at its end, whatever happened


@pytest.fixture(autouse=True)
def no_process_left():
    yield
    while STARTED:
        try:
            os.killpg(STARTED.pop(), signal.SIGKILL)
        except ProcessLookupError:
            pass


def start(args, cwd: Path, log: Path) -> subprocess.Popen:
    """``python -m zsguide ARGS`` in its own process group (the group holds every rank it starts)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, "-m", "zsguide", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115 - the child holds it
        start_new_session=True,
    )
    STARTED.append(proc.pid)
    return proc


def wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout  # a bound only: start-up on a loaded machine is slow
    while not predicate():
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.02)


def alive_in_group(pgid: int) -> list[int]:
    """The live processes (not zombies) of process group ``pgid``, from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp
            pids.append(int(entry.name))
    return pids


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def stopped_lines(log: Path) -> list[str]:
    return [ln for ln in log.read_text().splitlines() if ln.startswith("stopped by")]


# ------------------------------------------------------------------------------------------------ in process


def test_the_handler_raises_outside_a_run_and_only_flags_inside_one():
    before = signal.getsignal(signal.SIGINT)
    with signals.handle_stop_signals():
        with pytest.raises(signals.Stopped) as stopped:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs between two bytecodes
        assert stopped.value.exit_code == 143 and signals.received() == signal.SIGTERM
        signals.reset()
        signals._cooperative += 1  # what a Trainer's run does (signals.attach)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert signals.received() == signal.SIGINT  # flagged, nothing raised
        with pytest.raises(signals.Stopped) as stopped:
            signals.check()
        assert stopped.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is before  # restored
    assert signals.received() is None


def test_more_cpu_processes_than_cores_are_refused():
    from zsguide.runtime.trainer import quiet_trainer

    cores = signals.cpu_cores()
    with pytest.raises(ZSGuideError, match=rf"--trainer.devices {cores + 1} on the CPU: .* {cores} CPU core"):
        quiet_trainer(".", accelerator="cpu", devices=cores + 1, strategy="ddp")
    trainer = quiet_trainer(".", accelerator="cpu", devices=1)
    assert type(trainer.callbacks[-1]).__name__ == "StopOnSignal"


@pytest.mark.slow  # loads the checkpoint
def test_99_cpu_devices_are_refused_with_one_line_before_any_process_starts(tmp_path, capsys):
    rc = main(["restore", *SLOW_RESTORE, "--trainer.devices", "99", "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and len(error_lines(subprocess.CompletedProcess([], rc, "", err))) == 1, err
    assert "--trainer.devices 99 on the CPU" in err and "Traceback" not in err
    assert children_of(os.getpid()) == [] and not (tmp_path / "run" / "summary.json").exists()


# ------------------------------------------------------------------------------------------------ subprocesses


@pytest.mark.slow  # a restore subprocess
def test_sigterm_stops_a_restore_with_143_and_leaves_an_incomplete_folder(tmp_path):
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    proc = start(["restore", *SLOW_RESTORE, "--output", "run"], tmp_path, log)
    wait_for(lambda: (out / "parts" / "metrics.rank0.csv").exists(), proc, "the predict loop's start")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    took = time.monotonic() - t0
    text = log.read_text()
    assert rc == 143 and took < 10, (rc, took, text[-2000:])
    assert len(stopped_lines(log)) == 1 and "summary.json" in stopped_lines(log)[0] and "Traceback" not in text
    assert not (out / "summary.json").exists()  # an incomplete run
    assert [p for p in out.rglob("*") if ".tmp" in p.name] == []


@pytest.mark.slow  # an evaluate subprocess, then the same command in process
def test_sigterm_stops_an_evaluate_which_the_same_command_resumes(tmp_path, capsys):
    grid = ["evaluate", "--ckpt_path", CKPT, "--grid.samplers", "[ddrm]", "--grid.tasks", "[sr4]", "--grid.steps",
            "[250]", "--grid.params", "[heuristic]", "--grid.sigma_y", "[0.02]", "--num_images", "3", "--batch_size",
            "1", "--denoiser", "analytic", "--bootstrap", "20", *CPU, "--output", "run"]  # fmt: skip
    out, log = tmp_path / "run", tmp_path / "stderr.txt"

    def items() -> list[Path]:
        return sorted(out.glob("cells/*/items/*.npz"))

    proc = start(grid, tmp_path, log)
    wait_for(lambda: len(items()) >= 1, proc, "the first committed image")
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    kept = len(items())
    assert rc == 143 and 1 <= kept < 3, (rc, kept, log.read_text()[-2000:])
    assert len(stopped_lines(log)) == 1 and "resumes" in stopped_lines(log)[0]
    assert [p for p in out.rglob("*") if ".tmp" in p.name] == [] and not (out / "report.md").exists()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main([str(a) for a in grid])
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    assert len(items()) == 3 and f"{3 - kept} new" in captured.out  # the kept images were not computed again


@pytest.mark.slow  # a 2-process DDP restore
def test_kill_9_of_the_launcher_leaves_no_rank_behind(tmp_path):
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    ddp = ("--trainer.devices", "2", "--trainer.strategy", "ddp")
    proc = start(["restore", *SLOW_RESTORE, *ddp, "--output", "run"], tmp_path, log)
    wait_for(lambda: (out / "parts" / "metrics.rank1.csv").exists(), proc, "rank 1's predict loop")
    ranks = alive_in_group(proc.pid)
    assert len(ranks) == 2, ranks  # the launcher (rank 0) and rank 1, its child
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)  # the launcher alone
    proc.wait(timeout=30)
    while alive_in_group(proc.pid) and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert alive_in_group(proc.pid) == [], f"ranks left {time.monotonic() - t0:.1f} s after kill -9 of rank 0"
