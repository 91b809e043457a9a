"""The Lightning Trainer of the commands that write their own outputs (prior, test on a prior file, restore,
evaluate, calibrate): no logger, no checkpoints, no model summary; a bad ``--trainer.*`` option is one line. A
predict run's Trainer from the ``--trainer.*`` options, and the end of the other ranks' processes after a failure."""

from __future__ import annotations

import signal
from pathlib import Path

from ..errors import ZSGuideError


def quiet_trainer(root: str | Path, **options):
    """``lightning.Trainer(**options)`` with ``logger=False``, ``enable_checkpointing=False``,
    ``enable_model_summary=False`` and ``default_root_dir=root``; Lightning's complaint about an option (a
    misconfiguration, a bad value or type, an unavailable accelerator) becomes one :class:`ZSGuideError` line."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(
            logger=False, enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(root), **options
        )
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as exc:
        raise ZSGuideError(f"invalid --trainer options: {str(exc).splitlines()[0]}") from None


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
    in a collective): the ones this process started, by their process ids."""
    try:
        from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher
    except ImportError:  # pragma: no cover
        return
    launcher = getattr(trainer.strategy, "launcher", None)
    if isinstance(launcher, _SubprocessScriptLauncher) and trainer.is_global_zero:
        launcher.kill(signal.SIGKILL)
