"""The Lightning Trainer of the commands that write their own outputs (prior, test on a prior file, restore,
evaluate, calibrate): no logger, no checkpoints, no model summary; a bad ``--trainer.*`` option is one line; more CPU
processes than cores refused; SIGTERM and SIGINT stop it (:mod:`zsguide.runtime.signals`). A predict run's Trainer
from the ``--trainer.*`` options, and the end of the other ranks' processes after a failure."""

from __future__ import annotations

import signal
from pathlib import Path

from ..errors import ZSGuideError
from . import signals


def quiet_trainer(root: str | Path, **options):
    """``lightning.Trainer(**options)`` with ``logger=False``, ``enable_checkpointing=False``,
    ``enable_model_summary=False`` and ``default_root_dir=root``; Lightning's complaint about an option (a
    misconfiguration, a bad value or type, an unavailable accelerator) becomes one :class:`ZSGuideError` line."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        trainer = L.Trainer(
            logger=False, enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(root), **options
        )
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as exc:
        raise ZSGuideError(f"invalid --trainer options: {str(exc).splitlines()[0]}") from None
    return prepare_trainer(trainer)


def prepare_trainer(trainer):
    """What every zsguide Trainer gets (the commands' and ``fit``'s): more CPU processes than cores refused before
    any is started (:func:`check_cpu_devices`), and stopping on SIGTERM and SIGINT (:func:`signals.attach`)."""
    check_cpu_devices(trainer)
    return signals.attach(trainer)


def check_cpu_devices(trainer) -> None:
    """Refuse more CPU processes per node than the cores this process may use: each would be a process of its own
    (``--trainer.devices 99`` on 2 cores started 99 of them and ran the machine out of memory)."""
    from lightning.pytorch.accelerators import CPUAccelerator

    devices, cores = int(trainer.num_devices), signals.cpu_cores()
    if isinstance(trainer.accelerator, CPUAccelerator) and devices > cores:
        raise ZSGuideError(
            f"--trainer.devices {devices} on the CPU: more processes than the {cores} CPU core(s) this process may "
            f"use; use --trainer.devices {cores} or fewer (or a GPU accelerator)"
        )


def predict_trainer(
    callbacks: list,
    *,
    needs_grad: bool,
    root: str | Path,
    accelerator: str = "auto",
    devices: int | str | list[int] = 1,
    strategy: str = "auto",
    precision: int | str | None = "32-true",
    num_nodes: int = 1,
    enable_progress_bar: bool = True,
    **extra,
):
    """The Lightning Trainer of a predict run (:func:`quiet_trainer`) with the ``--trainer.*`` options of
    :func:`zsguide.runtime.options.add_trainer_options` (``**cfg.trainer.as_dict()``; defaults: theirs);
    ``inference_mode=False`` when a sampler differentiates through the denoiser (``needs_grad``)."""
    return quiet_trainer(
        root,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        precision=precision,
        num_nodes=num_nodes,
        enable_progress_bar=bool(enable_progress_bar),
        callbacks=callbacks,
        inference_mode=not needs_grad,
        **extra,
    )


def stop_other_ranks(trainer) -> None:
    """After a failure on rank 0, end the processes Lightning launched for the other ranks (they would otherwise wait
    in a collective): the ones this process started, by their process ids. After SIGTERM or SIGINT (which reached
    them too) they first get a few seconds to stop on their own (:func:`signals.stop_children`)."""
    try:
        from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher
    except ImportError:  # pragma: no cover
        return
    launcher = getattr(trainer.strategy, "launcher", None)
    if isinstance(launcher, _SubprocessScriptLauncher) and trainer.is_global_zero:
        signals.stop_children(trainer, signal.SIGKILL)
