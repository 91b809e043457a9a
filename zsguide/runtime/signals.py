"""Stopping on SIGTERM and SIGINT, and no orphaned ranks (docs/reliability.md, "Signals and crashes").

- :func:`handle_stop_signals` (``cli.main``, for the whole command): SIGTERM and SIGINT set a flag. Outside a
  Trainer's run the handler raises :class:`Stopped` at once (the commands' files are written atomically, so an
  exception anywhere leaves no half-written file); inside a run (:func:`attach`, from the Trainer's own signal
  registration to its teardown) it only sets the flag, and the run stops at the next safe point: the start or end
  of a batch (:func:`stop_on_signal`) or a sampler step (:func:`check`, through
  :func:`zsguide.runtime.progress.sampler_step_callback`). ``fit`` stops through Lightning's own flag
  (``trainer.received_sigterm``), which its training loop broadcasts from rank 0 at every batch, so every rank
  stops at the same batch. :class:`Stopped` (a ``BaseException``: no ``except Exception`` records it as a
  sampler failure) becomes exit status ``128 + signal`` (130 for SIGINT, 143 for SIGTERM) in ``cli.main``.
- Lightning's SIGTERM handler is replaced, not composed: it broadcasts a tensor from inside the handler, a
  collective the other ranks of a predict run never match. What it did that is useful, zsguide's handler does: the
  launcher (the process that started ranks 1.. with Lightning's ``_SubprocessScriptLauncher``) sends the signal on
  to them, so ``kill PID`` of rank 0 stops every rank; and it keeps Lightning's child-process observer from killing
  rank 0 with SIGKILL when a child stops first.
- :func:`guard_launched_rank` (``cli.main``, at start-up): a rank started by a launcher (Lightning's, torchrun's)
  asks Linux to kill it when its parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), so no rank waits forever in a
  collective when rank 0 or the agent dies, ``kill -9`` included; elsewhere a thread polls the parent's pid.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LAUNCHER_PID = "ZSGUIDE_LAUNCHER_PID"  # the pid of the process that may start ranks 1.. (inherited by them)
CHILDREN_GRACE_S = 5.0  # how long rank 0 waits for the ranks it started to stop on their own before SIGKILL

_received: int | None = None  # the first stop signal received by this process
_cooperative = 0  # > 0 inside a Trainer's run: the handler sets the flag only
_trainers: list[weakref.ref] = []  # the Trainers attached in this process (their launcher's children)


class Stopped(BaseException):
    """The command was stopped by ``signum`` (SIGTERM or SIGINT); the exit status is ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"stopped by {signal_name(signum)}")

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # pragma: no cover
        return f"signal {signum}"


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


def received() -> int | None:
    """The stop signal this process received (None: none)."""
    return _received


def check() -> None:
    """Raise :class:`Stopped` when a stop signal was received: called at safe points of a run."""
    if _received is not None:
        raise Stopped(_received)


def _handler(signum: int, frame: Any) -> None:
    global _received
    if _received is not None:  # a repeated signal changes nothing: often the same one twice (the group's, rank 0's)
        return
    _received = int(signum)
    _pass_on(signum)
    if not _cooperative:
        raise Stopped(_received)


def _install() -> dict[int, Any]:
    """zsguide's handler for SIGTERM and SIGINT (main thread only); returns the handlers it replaced."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for signum in STOP_SIGNALS:
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, _handler)
    return previous


@contextmanager
def handle_stop_signals() -> Iterator[None]:
    """For the duration of one command: SIGTERM and SIGINT stop it (:class:`Stopped`); the earlier handlers and the
    flag are restored afterwards (``main`` also runs inside other programs, e.g. the tests)."""
    global _received, _cooperative
    _received, _cooperative = None, 0
    previous = _install()
    try:
        yield
    finally:
        _received, _cooperative = None, 0
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        _trainers.clear()


def reset() -> None:
    """Forget a received signal (after ``cli.main`` reported it)."""
    global _received
    _received = None


# ------------------------------------------------------------------------------------------------ the Trainer


def stop_on_signal() -> Any:
    """A Lightning callback that raises :class:`Stopped` at the start and end of every predict, test and validation
    batch once a stop signal was received (placed last, so the writers have written the batch that ended). Training
    batches are left to Lightning: the handler sets ``trainer.received_sigterm``, which its training loop broadcasts
    from rank 0. (Built here, so that importing this module imports no Lightning: analyze and tune never do.)"""
    global _StopOnSignal
    if _StopOnSignal is None:
        from lightning.pytorch.callbacks import Callback

        def outside_fit(trainer: Any) -> bool:
            return trainer.state.fn != "fit"

        class StopOnSignal(Callback):
            def on_predict_batch_start(self, *args: Any, **kwargs: Any) -> None:
                check()

            def on_predict_batch_end(self, *args: Any, **kwargs: Any) -> None:
                check()

            def on_test_batch_start(self, *args: Any, **kwargs: Any) -> None:
                check()

            def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
                check()

            def on_validation_batch_start(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
                if outside_fit(trainer):
                    check()

            def on_validation_batch_end(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
                if outside_fit(trainer):
                    check()

        _StopOnSignal = StopOnSignal
    return _StopOnSignal()


_StopOnSignal: Any = None


def attach(trainer: Any) -> Any:
    """Make ``trainer`` stop on SIGTERM and SIGINT: :func:`stop_on_signal`'s callback among its callbacks (last), and zsguide's
    handler in place of Lightning's from the Trainer's own signal registration (start of each run, in every rank)
    to its teardown, in cooperative mode (the flag only). Lightning's other handlers (SLURM's requeue signal) stay."""
    if not any(type(c).__name__ == "StopOnSignal" for c in trainer.callbacks):
        trainer.callbacks.append(stop_on_signal())
    _trainers.append(weakref.ref(trainer))
    connector = getattr(trainer, "_signal_connector", None)
    if connector is None or not hasattr(connector, "register_signal_handlers"):  # pragma: no cover
        return trainer
    register, teardown = connector.register_signal_handlers, connector.teardown

    def register_then_replace() -> None:
        global _cooperative
        register()  # Lightning's: records the handlers to restore, SLURM's requeue signal
        _cooperative += 1
        _install()
        if _received is not None:
            connector.received_sigterm = True

    def teardown_then_leave() -> None:
        global _cooperative
        try:
            teardown()  # restores the handlers recorded at the start (zsguide's, when cli.main installed them)
        finally:
            _cooperative = max(0, _cooperative - 1)

    connector.register_signal_handlers = register_then_replace
    connector.teardown = teardown_then_leave
    return trainer


def _children(trainer: Any) -> list:
    """The processes that ``trainer``'s launcher started (ranks 1.. on this node), when this process started them."""
    launcher = getattr(getattr(trainer, "strategy", None), "launcher", None)
    return list(getattr(launcher, "procs", None) or [])


def _pass_on(signum: int) -> None:
    """From inside the handler: tell Lightning's loops (``received_sigterm``), send the signal on to the ranks this
    process started, and stop Lightning's child-process observer (it would SIGKILL this process when a child that
    stopped first exits non-zero; :func:`stop_children` ends them instead)."""
    for ref in list(_trainers):
        trainer = ref()
        if trainer is None:
            continue
        connector = getattr(trainer, "_signal_connector", None)
        if connector is not None:
            connector.received_sigterm = True
        for proc in _children(trainer):
            try:
                proc.send_signal(signum)
            except OSError:  # pragma: no cover - already gone
                pass
    if any(_children(ref()) for ref in _trainers if ref() is not None):
        for thread in threading.enumerate():
            if thread.name == "child-process-observer" and hasattr(thread, "_finished"):
                thread._finished = True  # its loop ends at its next wake-up


def stop_children(trainer: Any, kill_signal: int = signal.SIGKILL) -> None:
    """End the processes ``trainer``'s launcher started (rank 0 after a failure, so none waits in a collective).
    After a stop signal (which they received too) they get :data:`CHILDREN_GRACE_S` to stop on their own, leaving
    their files whole; then, and after any other failure at once, ``kill_signal``."""
    procs = _children(trainer)
    if _received is not None:
        deadline = time.monotonic() + CHILDREN_GRACE_S
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.send_signal(kill_signal)
            except OSError:  # pragma: no cover
                pass


# ------------------------------------------------------------------------------------------------ orphans


def rank_is_zero_by_env() -> bool:
    """Whether this process is global rank 0 by its launcher's variables (none set: a plain single process)."""
    env = os.environ
    if env.get("LOCAL_RANK", "0") != "0" or env.get("NODE_RANK", "0") != "0":
        return False
    if "RANK" in env:
        return env["RANK"] == "0"
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in env:
        return env["SLURM_PROCID"] == "0"
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


def _die() -> None:
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def _set_parent_death_signal(signum: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, signum)`` (Linux): the kernel sends ``signum`` to this process when the thread that
    started it exits. False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(signum), 0, 0, 0) == 0  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # pragma: no cover
        return False


def _watch_parent(parent: int, period_s: float = 1.0) -> None:
    """A daemon thread that ends this process when its parent is gone (where prctl is not available)."""

    def watch() -> None:
        while True:
            time.sleep(period_s)
            if os.getppid() != parent:
                _die()

    threading.Thread(target=watch, name="zsguide-parent-watch", daemon=True).start()


def guard_launched_rank() -> None:
    """At start-up. In a rank that a launcher started (``LOCAL_RANK`` and ``WORLD_SIZE`` set: Lightning's children,
    torchrun's workers), die with the parent: PDEATHSIG SIGKILL (a rank blocked in a collective runs no Python
    handler, so SIGTERM would not do), then a check that the parent did not die before it was set (its pid, from
    :data:`LAUNCHER_PID`, gone and no longer the parent; or adopted by init). Every process then records its own
    pid in :data:`LAUNCHER_PID` for the ranks it may start."""
    env = os.environ
    if "LOCAL_RANK" in env and "WORLD_SIZE" in env:
        parent = os.getppid()
        if not _set_parent_death_signal(getattr(signal, "SIGKILL", signal.SIGTERM)):
            _watch_parent(parent)
        parent = os.getppid()
        launcher = env.get(LAUNCHER_PID, "")
        if parent == 1 or (launcher.isdigit() and int(launcher) != parent and not _alive(int(launcher))):
            _die()  # the launcher died before PDEATHSIG was set
    env[LAUNCHER_PID] = str(os.getpid())


# ------------------------------------------------------------------------------------------------ CPU devices


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity, which containers and SLURM restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
