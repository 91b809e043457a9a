"""The lock of an output directory, shared by the commands that write a folder of results (restore, evaluate), and
which process of a launch takes it.

The lock is an advisory ``fcntl.flock`` on ``DIR/.lock``, taken by global rank 0 alone before any work and held for
the whole run: a second run into the same folder (of either command) refuses at once with one line naming the
holder's command, pid, host and start time, which the lock file records. The kernel releases the lock when the
holder's process ends, also after ``kill -9``, so a crashed run never blocks the next, and a run that holds the lock
knows that no other run is writing into the folder: it may then clear or replace what earlier runs left (their
summary, their per-image files, their temporary files, a run record still marked running).

The other ranks of a launch recognise themselves from the launcher's variables (:func:`launch_rank_is_zero`) before
Lightning is started, so they never touch the lock. ``flock`` is local to one machine on most network file systems:
two runs into one folder from two hosts are not excluded (the holder's host in the message tells which it is).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from ..errors import ZSGuideError

LOCK_NAME = ".lock"


def launch_rank_is_zero() -> bool:
    """Whether this process is global rank 0 by its launcher's variables (none set: a plain single process)."""
    env = os.environ
    if env.get("LOCAL_RANK", "0") != "0" or env.get("NODE_RANK", "0") != "0":  # Lightning's children, torchrun
        return False
    if "RANK" in env:  # torchrun
        return env["RANK"] == "0"
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:  # srun with one task per device
        return env["SLURM_PROCID"] == "0"
    return True


class OutputLock:
    """``flock(DIR/.lock, LOCK_EX | LOCK_NB)`` for as long as this object lives (or until :meth:`release`);
    ``command`` (``restore``, ``evaluate``) is recorded in the lock file for a second run's message."""

    def __init__(self, out: Path, command: str) -> None:
        self.path = Path(out) / LOCK_NAME
        self.command = command
        for _ in range(10):  # a holder may remove the file (release(remove_empty_dir)) between our open and flock
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a+")  # noqa: SIM115 - held open for the run's lifetime
            try:
                fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._fh.seek(0)
                holder = self._fh.read().strip() or "a run (unknown process)"
                self._fh.close()
                raise ZSGuideError(
                    f"output directory {str(out)!r} is in use by another {holder}; wait for it to finish or "
                    f"choose another --output"
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
        self._fh.write(
            f"{command} run (pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})"
        )
        self._fh.flush()

    @property
    def held(self) -> bool:
        return not self._fh.closed

    def release(self, remove_empty_dir: bool = False) -> None:
        """Unlock; with ``remove_empty_dir``, first (still holding the lock) remove the lock file and the directory
        if nothing else is in it (a run that stopped on bad input before writing anything leaves nothing)."""
        if self._fh.closed:
            return
        out = self.path.parent
        if remove_empty_dir and {p.name for p in out.iterdir()} <= {LOCK_NAME}:
            self.path.unlink(missing_ok=True)
            out.rmdir()
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
