"""The prediction writer: per-image files as batches finish, per-rank metric rows, and rank 0's merge and summary.

Lightning's predict loop gives each rank a disjoint share of the images (a non-repeating distributed sampler: rank r
gets indices r, r + W, ...; no padding with duplicates, unlike validate/test), so:

1. ``on_predict_start``: rank 0, which holds the output folder's lock (run.py), clears an earlier run's files
   (summary.json first, then its per-index images and temporary files) and writes config.yaml and params.json; then
   a barrier, so no rank writes into a directory being cleared.
2. ``write_on_batch_end``: each rank writes its images (named by dataset index) and appends its metric rows to
   ``parts/metrics.rank<r>.csv``. It also keeps in memory the cells of grid.png among its images: those whose index
   is among the first ``GRID_ROWS`` of the plan's expected indices in sorted order (truth, measurement, restored; the
   restored sample alone with ``--input``, whose measurement rank 0 keeps when it writes ``measurement/input``), so
   at most ``GRID_ROWS`` images over all ranks, whatever the number of images.
3. ``on_predict_end``: every rank sends its kept grid images to rank 0 (``torch.distributed.gather_object``, a
   collective every rank calls, also after a failure; nothing to gather on one device), then a barrier (every rank
   calls it too, so no rank is left waiting); a rank whose sampler failed has written ``parts/error.rank<r>.txt``.
   Rank 0 then either raises the first error (one ``error: ...`` line, no summary) or merges: it checks that every
   expected index was written exactly once and that the image folders hold no other run's files, writes metrics.csv sorted by index, grid.png from the gathered images
   (the files are not read back), removes ``parts/``, and writes summary.json last, atomically (temporary file +
   rename). A directory without summary.json is an incomplete run.

Means and standard errors are computed from the merged rows in index order, so the summary is the same for any
number of devices.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from ...errors import ZSGuideError
from ...evaluation.metrics import METRIC_NAMES, mean_and_se
from ...runtime.files import atomic_write_text, image_name, json_safe, write_json
from . import outputs as io


class RestoreWriter(BasePredictionWriter):
    def __init__(self, plan, config: dict, columns: tuple[str, ...]) -> None:
        super().__init__(write_interval="batch")
        self.plan = plan
        self.out = Path(plan.output)
        self.config = config
        self.columns = columns  # metric columns ('' in input mode)
        self._part: io.PartWriter | None = None
        self._t0 = 0.0
        self._grid_indices = frozenset(io.grid_indices(plan.expected_indices))
        self._kept: dict[int, tuple[torch.Tensor, ...]] = {}  # this rank's grid cells, by index
        self._input_measurement: torch.Tensor | None = None  # --input: the grid's first cell (rank 0)
        self.past_end_barrier = False  # every rank got past the end barrier: no rank is left waiting

    # ------------------------------------------------------------------------------------------------ start
    def on_predict_start(self, trainer, pl_module) -> None:
        self._kept = {}
        if trainer.is_global_zero:
            io.clear_previous(self.out)
            self.out.mkdir(parents=True, exist_ok=True)
            self._write_run_files()
        trainer.strategy.barrier("zsguide-restore-start")
        self._part = io.PartWriter(io.part_path(self.out, trainer.global_rank), self.columns)
        self._t0 = time.perf_counter()

    def _write_run_files(self) -> None:
        import yaml

        atomic_write_text(self.out / "config.yaml", yaml.safe_dump(json_safe(self.config), sort_keys=False))
        write_json(self.out / "params.json", self.plan.params.to_dict())
        if self.plan.mode == "input":
            from ...restoration import to_pixel_units

            y_pix = to_pixel_units(self.plan.input_measurement, self.plan.operator.to(dtype=torch.float64))[0]
            io.save_image(y_pix, self.out / "measurement" / "input")
            self._input_measurement = io.kept_image(y_pix)

    # ------------------------------------------------------------------------------------------------ batches
    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if prediction is None:  # the sampler failed on this rank; reported in on_predict_end
            return
        rows = []
        for j, index in enumerate(prediction["index"]):
            name = image_name(index)
            io.save_image(prediction["restored"][j], self.out / "restored" / name)
            if self.plan.mode == "dataset":
                io.save_image(prediction["measurement"][j], self.out / "measurement" / name)
                io.save_image(prediction["truth"][j], self.out / "truth" / name)
            self._keep_for_grid(int(index), prediction, j)
            row = {"index": index}
            for c in self.columns:
                row[c] = float(prediction["metrics"][c][j])
            rows.append(row)
        assert self._part is not None, "on_predict_start opens the part file"
        self._part.write(rows)

    def _keep_for_grid(self, index: int, prediction: dict, j: int) -> None:
        """Keep image ``index``'s grid cells (truth, measurement, restored; restored alone with ``--input``) as its
        ``.npy`` files hold them, when the grid shows it."""
        if index not in self._grid_indices:
            return
        subs = ("truth", "measurement", "restored") if self.plan.has_truth else ("restored",)
        self._kept[index] = tuple(io.kept_image(prediction[sub][j]) for sub in subs)

    # ------------------------------------------------------------------------------------------------ end
    def on_predict_end(self, trainer, pl_module) -> None:
        if self._part is not None:
            self._part.close()
        failure = getattr(pl_module, "failure", None)
        if failure is not None:
            atomic_write_text(io.error_path(self.out, trainer.global_rank), failure)
        kept = gather_on_rank_zero(trainer, self._kept)  # a collective: every rank, also a failed one
        trainer.strategy.barrier("zsguide-restore-end")
        self.past_end_barrier = True  # from here on, an exception leaves no other rank waiting
        if not trainer.is_global_zero:
            return
        errors = sorted(self.out.glob("parts/error.rank*.txt"), key=lambda p: int(p.stem.split("rank")[1]))
        if errors:
            raise ZSGuideError(errors[0].read_text().strip())
        self._finish(trainer, time.perf_counter() - self._t0, merge_kept(kept))

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self._part is not None:
            self._part.close()

    def _finish(self, trainer, wall: float, grid_images: dict[int, tuple[torch.Tensor, ...]]) -> None:
        plan = self.plan
        world = trainer.world_size
        rows = io.read_rows(io.part_path(self.out, r) for r in range(world))
        got = sorted(r["index"] for r in rows)
        if got != sorted(plan.expected_indices):
            missing = sorted(set(plan.expected_indices) - set(got))
            dup = sorted({i for i in got if got.count(i) > 1})
            raise ZSGuideError(
                f"restore wrote {len(got)} of {len(plan.expected_indices)} images (missing "
                f"{missing[:10]}, duplicated {dup[:10]}); summary.json not written"
            )
        for r in rows:
            if not (self.out / "restored" / f"{image_name(r['index'])}.png").is_file():
                raise ZSGuideError(
                    f"restored image {r['index']} is missing in {str(self.out)!r}; summary.json not written"
                )
        foreign = io.foreign_images(self.out, plan.expected_indices, plan.has_truth)
        if foreign:  # the folder was cleared under the lock: something else wrote into it meanwhile
            raise ZSGuideError(
                f"{str(self.out)!r} holds {len(foreign)} image file(s) that this run did not write "
                f"({', '.join(foreign[:5])}); summary.json not written"
            )
        rows.sort(key=lambda r: r["index"])
        if plan.has_truth:
            io.write_metrics_csv(self.out / "metrics.csv", rows, self.columns)
        self._grid(grid_images)
        shutil.rmtree(self.out / "parts", ignore_errors=True)
        summary = self._summary(rows, trainer, wall)
        write_json(self.out / "summary.json", summary)  # last: marks the run complete
        print_summary(summary, self.out)

    def _grid(self, images: dict[int, tuple[torch.Tensor, ...]]) -> None:
        """grid.png from the kept images of every rank: one row of truth | measurement | restored per grid index, or
        with ``--input`` one row: the measurement, then the first samples."""
        plan = self.plan
        first = io.grid_indices(plan.expected_indices)
        missing = [i for i in first if i not in images]
        if missing:
            raise ZSGuideError(f"the grid's images {missing} were not kept in memory; summary.json not written")
        if plan.has_truth:
            grid_rows = [list(images[i]) for i in first]
        else:
            assert self._input_measurement is not None, "rank 0 keeps it in on_predict_start"
            grid_rows = [[self._input_measurement] + [images[i][0] for i in first]]
        io.write_grid(self.out / "grid.png", grid_rows, plan.image_shape)

    def _summary(self, rows: list[dict], trainer, wall: float) -> dict:
        plan = self.plan
        p = plan.params
        n_out = len(rows)
        summary = {
            "complete": True,
            "mode": plan.mode,
            "sampler": p.method,
            "task": plan.task,
            "task_params": plan.task_params_resolved,
            "steps": p.steps,
            "spacing": p.spacing,
            "params_source": plan.params_source,
            "sigma_y": plan.sigma_y,
            "noise_convention": plan.noise_convention,
            "sigma_y_pixel": plan.sigma_net / 2,
            "sigma_network": plan.sigma_net,
            "seed": plan.seed,
            "num_images": n_out if plan.has_truth else 1,
            "num_samples": plan.num_samples,
            "denoiser": plan.denoiser,
            "checkpoint": plan.ckpt_path,
            "surrogate_digest": plan.meta.get("surrogate_digest"),
            "network": _network_record(plan.meta),
            "image_shape": list(plan.image_shape),
            "data": {k: v for k, v in (plan.data_options or {}).items() if k != "batch_size"} or None,
            "input": plan.input_path,
            "ground_truth": plan.has_truth,
            "clipped": plan.clipped if plan.has_truth else None,
            "metrics": list(self.columns) if plan.has_truth else None,
            # network calls, vector-Jacobian products, operator applications per image (samplers/cost.py)
            "cost_per_image": getattr(trainer.lightning_module, "cost", None),
        }
        if plan.has_truth:
            for c in self.columns:
                mean, se = mean_and_se([r[c] for r in rows])
                summary[f"{c}_mean"], summary[f"{c}_se"] = mean, se
            summary["lpips"] = "computed" if "lpips" in self.columns else plan.lpips_note
        else:
            summary["metrics_note"] = "no ground truth (--input): no metrics"
        summary |= {
            "wall_time_s": wall,
            "images_per_second": n_out / wall if wall > 0 else None,
            "devices": trainer.world_size,
            "accelerator": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
            "strategy": type(trainer.strategy).__name__,
            "precision": str(trainer.precision),
        }
        return summary


def gather_on_rank_zero(trainer, obj) -> list:
    """Every rank's ``obj`` on rank 0, in rank order (``[obj]`` on one device, ``[]`` on the other ranks). With several
    processes it is a collective (``torch.distributed.gather_object`` on the process group the strategy initialised):
    every rank must call it."""
    if trainer.world_size == 1:
        return [obj]
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ZSGuideError(
            f"{trainer.world_size} ranks but torch.distributed is not initialised: cannot gather the grid's images"
        )
    gathered: list | None = [None] * trainer.world_size if trainer.is_global_zero else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered if gathered is not None else []


def merge_kept(parts: list[dict]) -> dict:
    """The ranks' kept grid images in one dict by index (the ranks' indices are disjoint)."""
    merged = {}
    for part in parts:
        merged.update(part)
    return merged


def metric_columns(plan, with_lpips: bool) -> tuple[str, ...]:
    if not plan.has_truth:
        return ()
    return METRIC_NAMES + (("lpips",) if with_lpips else ())


def print_summary(summary: dict, out: Path) -> None:
    """A few lines on stdout (rank 0): what ran and the means with standard errors."""
    lines = [
        f"restore: {summary['sampler']} on {summary['task']}, {summary['steps']} steps, sigma_y "
        f"{summary['sigma_y_pixel']:g} (pixel units), {summary['denoiser']} denoiser, "
        f"{summary['num_images'] if summary['ground_truth'] else summary['num_samples']} "
        f"{'images' if summary['ground_truth'] else 'samples'} on {summary['devices']} device(s), "
        f"{summary['wall_time_s']:.1f} s"
    ]
    for c in summary.get("metrics") or ():
        mean, se = summary[f"{c}_mean"], summary[f"{c}_se"]
        lines.append(f"  {c:>6} {mean:.6g}" + (f" ± {se:.2g}" if se is not None else ""))
    lines.append(f"wrote {out}")
    print("\n".join(lines), flush=True)


def _network_record(meta: dict) -> dict | None:
    """What a prior file's network is (architecture, preset, files and their sha256); None for a fit checkpoint,
    whose network is inside it."""
    net = meta.get("network")
    if net is None:
        return None
    return {
        "arch": net["arch"],
        "preset": net["preset"],
        "parameters": net["parameters"],
        "files": {k: {"path": v["path"], "sha256": v["sha256"]} for k, v in net["files"].items()},
    }
