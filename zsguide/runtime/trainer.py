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


def predict_trainer(t, callbacks: list, *, needs_grad: bool, root, **extra):
    """The Lightning Trainer of a predict run from the ``--trainer.*`` options ``t`` (:func:`quiet_trainer`);
    ``inference_mode=False`` when a sampler differentiates through the denoiser (``needs_grad``)."""
    return quiet_trainer(
        root,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=t.precision,
        num_nodes=t.num_nodes,
        enable_progress_bar=bool(t.enable_progress_bar),
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
