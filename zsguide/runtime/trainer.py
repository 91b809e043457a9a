"""The Lightning Trainer of the commands that write their own outputs (prior, test on a prior file, restore,
evaluate, calibrate): no logger, no checkpoints, no model summary; a bad ``--trainer.*`` option is one line."""

from __future__ import annotations

from pathlib import Path

from .errors import ZSGuideError


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
