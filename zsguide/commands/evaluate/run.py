"""``python -m zsguide evaluate``: parse, lock, plan, run the grid as one Lightning predict loop, report.

Launchers: one process (``--trainer.devices 1``); Lightning's own DDP on one node (``--trainer.devices N
--trainer.strategy ddp``: Lightning starts the other ranks by re-running this command); torchrun or SLURM for several
nodes (one process per device, ``--trainer.num_nodes M --trainer.devices N``; Lightning reads the ranks from their
environment). Only the process of global rank 0 takes the output lock, before any work; every other process
recognises itself from the launcher's variables (``RANK``, ``SLURM_PROCID``, ``LOCAL_RANK``/``NODE_RANK``).

Holding the lock, rank 0 removes the temporary files of interrupted earlier runs and enters this run in runs.json as
``running`` (an entry an earlier run left ``running`` becomes ``interrupted``: its process is gone, since the lock was
free); the report completes the entry. Exit status (:data:`EXIT_CELLS_FAILED`): 3 when a cell failed (a sampler
failure, e.g. a NaN), after the tables and report are written; 2 for bad input (``error: ...``); 0 otherwise.
"""

from __future__ import annotations

import shlex
import sys
import time
import warnings
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_info

from ...runtime.lock import OutputLock, launch_rank_is_zero
from ...runtime.options import config_to_dict
from ...runtime.trainer import predict_trainer, stop_other_ranks
from . import store
from .options import parse
from .plan import EvaluatePlan, check_options, make_plan, output_dir

EXIT_CELLS_FAILED = 3  # the grid ran and its report is written, but a cell failed (docs/evaluate.md)


def run_evaluate(argv: list[str]) -> int:
    """Run (or resume) an evaluation; bad input raises :class:`ZSGuideError` before anything is written. Returns the
    exit status: 0, or :data:`EXIT_CELLS_FAILED` when a cell failed (its report written)."""
    import yaml

    from ...runtime.files import atomic_write_text, json_safe

    warnings.filterwarnings("ignore", message=".*infer the batch indices.*")  # our batches carry their indices
    cfg = parse(argv)
    is_zero = launch_rank_is_zero()
    specs = check_options(cfg)  # cheap checks first: a bad entry never touches --output
    output = output_dir(cfg)
    created = not output.exists()
    lock = OutputLock(output, "evaluate") if is_zero else None  # before the designs: a second run waits for nothing
    outcome: dict[str, Any] = {"failed": []}
    run_info: dict[str, Any] = {}
    try:
        try:
            plan = make_plan(cfg, specs)
        except BaseException:
            if lock is not None:
                lock.release(remove_empty_dir=created)  # leave no directory behind that only the lock made
                lock = None
            raise
        for note in plan.notes:
            rank_zero_info(f"zsguide: {note}")
        lpips = inception = None
        if plan.lpips_path is not None:
            from ...evaluation.metrics import load_lpips

            lpips = load_lpips(plan.lpips_path)
        if plan.fid_path is not None:
            from ...evaluation.fid import load_inception

            inception = load_inception(plan.fid_path)
        command = "python -m zsguide evaluate " + " ".join(shlex.quote(a) for a in argv)
        run_info |= {"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        if is_zero:
            store.remove_stale_files(plan.output)  # an interrupted run's temporary files (we hold the lock)
            atomic_write_text(
                plan.output / "config.yaml", yaml.safe_dump(json_safe(config_to_dict(cfg)), sort_keys=False)
            )
            run_info["number"] = store.start_run(plan.output, run_info)
        before = sum(len(plan.done(c)) for c in plan.cells) if is_zero else 0
        complete = all(len(plan.done(c)) == len(plan.indices) for c in plan.cells)
        if cfg.report_only or complete:  # nothing to run (Lightning skips a loop with no batches at all)
            run_info |= {"report_only": bool(cfg.report_only), "new_items": 0, "wall_time_s": 0.0}
            if is_zero:
                outcome["failed"] = _finish(plan, run_info, inception)
            return _exit_status(outcome["failed"])
        t0 = time.perf_counter()

        def on_complete(trainer) -> None:
            after = sum(len(plan.done(c)) for c in plan.cells)
            run_info.update(
                new_items=after - before,
                wall_time_s=time.perf_counter() - t0,
                devices=trainer.world_size // max(trainer.num_nodes, 1),
                num_nodes=trainer.num_nodes,
                accelerator=type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
                strategy=type(trainer.strategy).__name__,
                precision=str(trainer.precision),
            )
            outcome["failed"] = _finish(plan, run_info, inception)

        from .module import EvaluateModule
        from .progress import EvaluateProgressBar
        from .writer import EvaluateWriter

        writer = EvaluateWriter(plan, on_complete)
        callbacks = [writer] + ([EvaluateProgressBar(plan)] if cfg.trainer.enable_progress_bar else [])
        trainer = predict_trainer(
            callbacks,
            needs_grad=plan.needs_grad,
            root=plan.output,
            use_distributed_sampler=False,
            **cfg.trainer.as_dict(),
        )
        try:
            trainer.predict(EvaluateModule(plan, lpips, inception), return_predictions=False)
        except BaseException:
            if not writer.past_end_barrier:
                stop_other_ranks(trainer)
            raise
        return _exit_status(outcome["failed"])
    except BaseException as exc:
        if lock is not None and "number" in run_info:  # entered in runs.json: say how it ended
            error = (str(exc).strip().splitlines() or [type(exc).__name__])[0] if isinstance(exc, Exception) else None
            store.end_run(output, run_info, "error" if error is not None else "interrupted", error)
        raise
    finally:
        if lock is not None:
            lock.release()


def _exit_status(failed: list[str]) -> int:
    if not failed:
        return 0
    print(
        f"evaluate: {len(failed)} cell(s) failed ({', '.join(failed[:5])}{', ...' if len(failed) > 5 else ''}); "
        f"the report is written, their failed batches run again next time; exit status {EXIT_CELLS_FAILED}",
        file=sys.stderr,
        flush=True,
    )
    return EXIT_CELLS_FAILED


def _finish(plan: EvaluatePlan, run_info: dict, inception) -> list[str]:
    """Write the report (rank 0) with this run's runs.json entry completed; the keys of the failed cells."""
    from .report import write_report

    failed = [
        c.key for c in plan.cells if len(plan.done(c)) < len(plan.indices) and store.failures(plan.output, c.folder)
    ]
    run_info |= {"status": "complete"} | ({"failed_cells": failed} if failed else {})
    content = write_report(plan, run_info, inception)
    cells = content["cells"]
    flagged = [c["key"] for c in cells if c.get("worse_both")]
    print(
        f"evaluate: {len(cells)} cells, {sum(c['n'] for c in cells)} of {plan.total_items} images; "
        f"{run_info.get('new_items', 0)} new in {run_info.get('wall_time_s', 0):.1f} s; "
        f"worse than the heuristic on both PSNR and FD: {len(flagged)}"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + f"\nwrote {plan.output / 'report.md'}",
        flush=True,
    )
    return failed
