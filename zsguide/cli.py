"""``python -m zsguide <subcommand>``.

- ``fit``, ``validate``, ``test``: LightningCLI over :class:`ScoreModule` and :class:`ImageDataModule` (YAML configs
  with ``--config``, overrides such as ``--trainer.max_steps``, ``--data.*``, ``--model.*``). ``test`` runs the
  denoise check of a checkpoint (``--ckpt_path``).
- ``prior``: a pretrained network and a surrogate fitted from images, as one prior file (:mod:`zsguide.commands.prior`).
- ``restore``: Lightning's predict loop over test images (or ``--input``) with a sampler (:mod:`zsguide.commands.restore`).
- ``evaluate``: a grid of restorations as one resumable Lightning run, with a report (:mod:`zsguide.commands.evaluate`).
- ``calibrate``: a denoiser's response against the surrogate (:mod:`zsguide.commands.calibration`).
- ``analyze``, ``tune``: the spectral engine's closed forms and designs (:mod:`zsguide.commands.analyze`).
- ``search``: a network-in-the-loop search of a sampler's parameters (:mod:`zsguide.commands.search`).

Every user error (:class:`ZSGuideError`, a missing file) is printed as one line ``error: ...`` with exit status 2.
``evaluate`` exits with status 3 when a cell of its grid failed, after writing its report (docs/evaluate.md).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from .errors import ZSGuideError

LIGHTNING_COMMANDS = ("fit", "validate", "test")
USAGE = (
    "usage: python -m zsguide {fit,validate,test,prior,calibrate,restore,evaluate,analyze,tune,search} [options]\n"
    "  fit       train the score network and fit the Gaussian surrogate (--config configs/fit/patches.yaml)\n"
    "  prior     a pretrained network (ADM, diffusers) + a surrogate fitted from your images, in one small file\n"
    "  calibrate measure the denoiser's linear response and residual against the surrogate, per time and frequency\n"
    "  test      denoise check of a checkpoint against its surrogate (--config ... --ckpt_path ...)\n"
    "  validate  validation loss of a checkpoint\n"
    "  restore   restore images with a sampler (--ckpt_path ... --task sr4 --sampler ddrm; configs/restore/)\n"
    "  evaluate  a grid of restorations on 1..N devices, resumable, with a report (configs/evaluate/)\n"
    "  analyze   closed-form comparison of the samplers with the posterior, heuristic vs designed (every task)\n"
    "  tune      design one sampler's schedule into a params.json for restore --params FILE\n"
    "  search    search one sampler's parameters with the network in the loop (Optuna) into a params.json\n"
    "Run 'python -m zsguide <command> --help' for the options of a command."
)


LIGHTNING_TIPS = ("💡 Tip: For seamless cloud logging",)  # Lightning's advert, logged when a Trainer has no LitLogger


def _drop_lightning_tips(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(LIGHTNING_TIPS)


def quiet_dependencies() -> None:
    """Keep messages a user cannot act on out of every command's output, in this process and in the ranks that
    Lightning starts (they run this ``main`` again): Lightning's litlogger advert, logged by every Trainer without a
    LitLogger, and torch's FutureWarning about ``LeafSpec``, raised by Lightning's own code
    (``lightning/pytorch/utilities/_pytree.py``). Lightning's other lines and every warning of zsguide stay."""
    for package in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logger = logging.getLogger(f"{package}.utilities.rank_zero")  # where rank_zero_info logs (made now if need be)
        if _drop_lightning_tips not in logger.filters:
            logger.addFilter(_drop_lightning_tips)
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )


def run_lightning(argv: list[str] | None) -> None:
    from lightning.pytorch.cli import LightningCLI

    from .data import ImageDataModule
    from .diffusion.module import ScoreModule
    from .runtime.trainer import prepare_trainer

    class ZSGuideCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("data.channels", "model.channels")
            parser.link_arguments("data.image_size", "model.image_size")

        def instantiate_trainer(self, **kwargs):  # CPU processes checked; SIGTERM and SIGINT stop it
            return prepare_trainer(super().instantiate_trainer(**kwargs))

    ZSGuideCLI(
        ScoreModule,
        ImageDataModule,
        args=argv,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "python -m zsguide"},
    )


def _option(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _prior_file_given(argv: list[str]) -> bool:
    """Whether ``--ckpt_path`` names a prior file. The file is read safely here (``weights_only``), so a crafted
    checkpoint is refused with one line before Lightning opens it."""
    path = _option(argv, "--ckpt_path")
    if path is None or not Path(path).is_file():  # Lightning's own "last", "best", URLs: left to Lightning
        return False
    from .checkpoint import read_checkpoint
    from .prior_file import is_prior

    return is_prior(read_checkpoint(path))


STOPPED_NOTES = {  # what an interrupted command leaves (docs/reliability.md, "Signals and crashes")
    "restore": "the output folder has no summary.json (an incomplete run); run the command again",
    "evaluate": "every committed image is kept; the same command resumes",
    "prior": "no prior file written",
    "calibrate": "no calibration written",
    "fit": "the checkpoints written so far are kept",
    "search": "every finished trial is kept in the study; the same command resumes",
}


def main(argv: list[str] | None = None) -> int:
    """Run one command. SIGTERM and SIGINT stop it at the next batch or sampler step (exit status 143 or 130, one
    line ``stopped by SIGTERM: ...``); a rank that a launcher started dies with its parent."""
    from .runtime import signals

    signals.guard_launched_rank()
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else ""
    with signals.handle_stop_signals():
        try:
            rc = _run(argv)
        except BaseException as exc:
            if signals.received() is None and not isinstance(exc, signals.Stopped):
                raise
            return _stopped(command, exc.signum if isinstance(exc, signals.Stopped) else signals.received())
        if signals.received() is not None:
            return _stopped(command, signals.received())
        return rc


def _stopped(command: str, signum: int | None) -> int:
    """One line on rank 0 (the other ranks stop quietly); the exit status 128 + signal."""
    from .runtime import signals

    assert signum is not None
    if signals.rank_is_zero_by_env():
        note = STOPPED_NOTES.get(command, "")
        print(f"stopped by {signals.signal_name(signum)}" + (f": {note}" if note else ""), file=sys.stderr, flush=True)
    signals.reset()
    return signals.exit_code(signum)


def _run(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning")  # keep Lightning's CPU/worker advice out of logs
    quiet_dependencies()
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command = argv[0]
    try:
        if command in LIGHTNING_COMMANDS:
            if _prior_file_given(argv):
                if command != "test":
                    raise ZSGuideError(
                        f"{command} applies to checkpoints written by 'python -m zsguide fit'; a prior "
                        f"file's network is checked with 'python -m zsguide test --ckpt_path PRIOR'"
                    )
                from .commands.prior.check import run_prior_test

                run_prior_test(argv[1:])
            else:
                run_lightning(None if from_command_line else argv)
        elif command == "prior":
            from .commands.prior.command import run_prior

            run_prior(argv[1:])
        elif command == "restore":
            from .commands.restore import run_restore

            run_restore(argv[1:])
        elif command == "calibrate":
            from .commands.calibration.command import run_calibrate

            run_calibrate(argv[1:])
        elif command == "evaluate":
            from .commands.evaluate import run_evaluate

            return run_evaluate(argv[1:])  # 3 (EXIT_CELLS_FAILED) when a cell failed, after its report
        elif command == "search":
            from .commands.search import run_search

            run_search(argv[1:])
        elif command in ("analyze", "tune"):
            from .commands.analyze import run_analyze, run_tune

            (run_analyze if command == "analyze" else run_tune)(argv[1:])
        else:
            print(f"error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
            return 2
    except ZSGuideError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
