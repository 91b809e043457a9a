"""``python -m zsguide restore``: parse, check the options, lock the output folder (global rank 0), plan, and run
Lightning's predict loop with the writer and progress bar."""

from __future__ import annotations

from lightning.fabric.utilities.rank_zero import rank_zero_info
from lightning.pytorch.callbacks import Callback

from ...runtime.lock import OutputLock, launch_rank_is_zero
from ...runtime.options import config_to_dict
from ...runtime.trainer import predict_trainer, stop_other_ranks
from .options import parse
from .plan import RestorePlan, make_plan
from .validate import check_options


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


def run_restore(argv: list[str]) -> None:
    """Run a restore job; bad input raises :class:`ZSGuideError` before anything is written. Global rank 0 holds
    the output folder's lock (runtime/lock.py) from before the checkpoint is loaded to the end: a second run into the
    folder refuses, and an earlier run's files are replaced only under the lock (writer.py)."""
    cfg = parse(argv)
    checked = check_options(cfg)  # the options alone first: bad input never touches --output
    output = checked[-1]
    created = not output.exists()
    lock = OutputLock(output, "restore") if launch_rank_is_zero() else None
    try:
        _restore(cfg, checked)
    finally:
        if lock is not None:
            lock.release(remove_empty_dir=created)  # bad input leaves no folder that only the lock made


def _restore(cfg, checked: tuple) -> None:
    from torch.utils.data import DataLoader

    from ...evaluation.metrics import load_lpips
    from .module import RestoreModule
    from .progress import RestoreProgressBar
    from .writer import RestoreWriter, metric_columns

    plan = make_plan(cfg, checked)
    for note in plan.notes:
        rank_zero_info(f"zsguide: {note}")
    if plan.lpips_note:
        rank_zero_info(f"zsguide: {plan.lpips_note}")
    lpips = load_lpips(plan.lpips_path) if plan.lpips_path is not None else None

    writer = RestoreWriter(plan, resolved_config(cfg, plan), metric_columns(plan, lpips is not None))
    callbacks: list[Callback] = [writer]
    if cfg.trainer.enable_progress_bar:
        callbacks.append(RestoreProgressBar(plan.num_outputs, plan.params.steps))
    trainer = predict_trainer(callbacks, needs_grad=plan.sampler.needs_grad, root=plan.output, **cfg.trainer.as_dict())
    module = RestoreModule(plan, lpips)
    loader = DataLoader(plan.dataset, batch_size=plan.batch_size, shuffle=False, num_workers=plan.num_workers)
    try:
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    except BaseException:
        if not writer.past_end_barrier:
            stop_other_ranks(trainer)
        raise
