"""``python -m zsguide restore``: parse, plan, and run Lightning's predict loop with the writer and progress bar."""

from __future__ import annotations

import signal

from lightning.fabric.utilities.rank_zero import rank_zero_info
from lightning.pytorch.callbacks import Callback

from ..trainer import quiet_trainer
from .options import config_to_dict, parse
from .plan import RestorePlan, make_plan


def resolved_config(cfg, plan: RestorePlan) -> dict:
    """The options as run: ``--data.*`` filled with the data options actually used (checkpoint's + overrides) and
    ``--steps`` with the schedule's step count, so ``--config DIR/config.yaml`` repeats the run."""
    out = config_to_dict(cfg)
    out["steps"] = plan.params.steps
    if plan.data_options is not None:
        out["data"] = {k: v for k, v in plan.data_options.items() if k != "batch_size"}
    else:
        out.pop("data", None)
    out["output"] = str(plan.output)
    return out


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


def run_restore(argv: list[str]) -> None:
    """Run a restore job; bad input raises :class:`ZSGuideError` before anything is written."""
    from torch.utils.data import DataLoader

    from ..evaluation.metrics import load_lpips
    from .module import RestoreModule
    from .progress import RestoreProgressBar
    from .writer import RestoreWriter, metric_columns

    cfg = parse(argv)
    plan = make_plan(cfg)
    for note in plan.notes:
        rank_zero_info(f"zsguide: {note}")
    if plan.lpips_note:
        rank_zero_info(f"zsguide: {plan.lpips_note}")
    lpips = load_lpips(plan.lpips_path) if plan.lpips_path is not None else None

    writer = RestoreWriter(plan, resolved_config(cfg, plan), metric_columns(plan, lpips is not None))
    callbacks: list[Callback] = [writer]
    if cfg.trainer.enable_progress_bar:
        callbacks.append(RestoreProgressBar(plan.num_outputs, plan.params.steps))
    trainer = predict_trainer(cfg.trainer, callbacks, needs_grad=plan.sampler.needs_grad, root=plan.output)
    module = RestoreModule(plan, lpips)
    loader = DataLoader(plan.dataset, batch_size=plan.batch_size, shuffle=False, num_workers=plan.num_workers)
    try:
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    except BaseException:
        if not writer.past_end_barrier:
            stop_other_ranks(trainer)
        raise


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
