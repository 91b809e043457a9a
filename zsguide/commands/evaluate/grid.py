"""The grid of an evaluation: its entries checked one by one, and its cells with their identities.

A cell is one (sampler, task, steps, parameter source, sigma_y, seed); its images are the first ``num_images``
held-out test images. Entries:

- a task is a name (``sr4``) or a mapping ``{name, params, label}``; ``params`` are the task's parameters
  (operators/tasks.py), ``label`` names it in the tables (default: the name, with ``key=value`` pairs when
  ``params`` are given);
- a parameter source is ``heuristic``, ``spectral`` (restore's default design: trust factor 2, no guard), or a mapping
  ``{source: spectral, trust_factor: T | none, pareto_guard: bool, objective: w2 | mse | perception | pareto,
  denoiser_model: gaussian | calibrated, calibration: PATH, label}`` (label default ``spectral`` for the default
  design, else ``spectral_trust<T>`` / ``spectral_free``, plus ``_guard``, ``_<objective>`` for an objective other
  than w2, and ``_calibrated``), or ``{source: PATH}`` for a params.json, or ``{source: TEMPLATE, label}`` for one
  params.json per cell: a path with the fields ``{sampler}``, ``{task}`` (the task's label), ``{steps}``,
  ``{sigma_y}`` (``%g``) and ``{seed}``, e.g. the searches of ``python -m zsguide search`` (docs/search.md);
- sigma_y >= 0 (finite), steps >= 1, seeds integers, samplers by restore's names.

Every entry is checked before anything runs, and an error names the entry (``grid.tasks[1]``). Duplicate labels are
refused (two cells would share a row).

A cell's *heuristic twin* is the cell that differs from it only by parameter source ``heuristic``: the paired
differences in the report are taken against it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

from ...errors import ZSGuideError
from ...spectral.options import DesignOptions

SPEC_KEYS_TASK = ("name", "params", "label")
SPEC_KEYS_PARAMS = ("source", *DesignOptions.names(), "label")


@dataclass(frozen=True)
class TaskSpec:
    label: str
    name: str
    params: dict = field(default_factory=dict, hash=False)


TEMPLATE_FIELDS = {"sampler": "ddrm", "task": "sr4", "steps": 20, "sigma_y": "0.02", "seed": 0}  # names: examples


def is_template(source: str) -> bool:
    """Whether a parameter source is a params.json path template (it holds ``{...}`` fields)."""
    return "{" in source


@dataclass(frozen=True)
class ParamsSpec:
    label: str
    source: str  # heuristic, spectral, a params.json path, or a template of one (TEMPLATE_FIELDS)
    design: DesignOptions = DesignOptions()  # what ``spectral`` designs with (its defaults: restore's)


@dataclass(frozen=True)
class CellSpec:
    """One cell of the grid, before anything is loaded."""

    sampler: str
    task: TaskSpec
    steps: int
    params: ParamsSpec
    sigma_y: float
    seed: int

    @property
    def key(self) -> str:
        """Readable and unique in the grid: ``sampler/task/steps/params/sigma_y/seed``."""
        return f"{self.sampler}/{self.task.label}/{self.steps}/{self.params.label}/{self.sigma_y!r}/{self.seed}"

    @property
    def source(self) -> str:
        """The cell's parameter source: a template's fields filled in with the cell's sampler, task label, steps,
        sigma_y (``%g``) and seed."""
        if not is_template(self.params.source):
            return self.params.source
        return self.params.source.format(
            sampler=self.sampler, task=self.task.label, steps=self.steps, sigma_y=f"{self.sigma_y:g}", seed=self.seed
        )

    @property
    def twin_key(self) -> str:
        return f"{self.sampler}/{self.task.label}/{self.steps}/heuristic/{self.sigma_y!r}/{self.seed}"


def _task_spec(entry, where: str) -> TaskSpec:
    from ...operators import task_defaults

    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict):
        raise ZSGuideError(f"{where}: a task is a name or a mapping {{name, params, label}}, got {entry!r}")
    unknown = sorted(set(entry) - set(SPEC_KEYS_TASK))
    if unknown:
        raise ZSGuideError(f"{where}: unknown key(s) {', '.join(unknown)}; a task takes {', '.join(SPEC_KEYS_TASK)}")
    name = entry.get("name")
    if not isinstance(name, str):
        raise ZSGuideError(f"{where}: the task needs a name, got {entry!r}")
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        raise ZSGuideError(f"{where} ({name}): params must be a mapping, got {params!r}")
    try:
        defaults = task_defaults(name)
    except ZSGuideError as exc:
        raise ZSGuideError(f"{where}: {exc}") from None
    bad = sorted(set(params) - set(defaults))
    if bad:
        raise ZSGuideError(
            f"{where} ({name}): unknown task parameter(s) {', '.join(bad)}; {name} takes "
            f"{', '.join(defaults) or 'none'}"
        )
    label = entry.get("label") or (name + "".join(f"_{k}{v}" for k, v in sorted(params.items())))
    return TaskSpec(str(label), name, dict(params))


def _params_spec(entry, where: str) -> ParamsSpec:
    if isinstance(entry, str):
        entry = {"source": entry}
    if not isinstance(entry, dict):
        raise ZSGuideError(
            f"{where}: a parameter source is heuristic, spectral or a mapping "
            f"{{source, trust_factor, pareto_guard, label}}, got {entry!r}"
        )
    unknown = sorted(set(entry) - set(SPEC_KEYS_PARAMS))
    if unknown:
        raise ZSGuideError(
            f"{where}: unknown key(s) {', '.join(unknown)}; a parameter source takes {', '.join(SPEC_KEYS_PARAMS)}"
        )
    source = entry.get("source")
    if not isinstance(source, str) or not source:
        raise ZSGuideError(f"{where}: the parameter source needs a source (heuristic, spectral or a params.json)")
    design = DesignOptions(**{k: entry[k] for k in DesignOptions.names() if k in entry})
    if source != "spectral" and design.given():
        names = DesignOptions.names()
        raise ZSGuideError(f"{where}: {', '.join(names[:-1])} and {names[-1]} apply to source spectral only")
    design.checked(lambda name: f"{where}.{name}")
    if source == "spectral":
        label = entry.get("label") or design.label()
    elif source == "heuristic":
        label = entry.get("label") or "heuristic"
        if label != "heuristic":  # the twin of every other source is found by this label
            raise ZSGuideError(f"{where}: the heuristic source is labelled 'heuristic' (got label {label!r})")
    elif is_template(source):
        try:
            source.format(**TEMPLATE_FIELDS)
        except (KeyError, IndexError, ValueError) as exc:
            raise ZSGuideError(
                f"{where}: the params.json template {source!r} has an unknown field {exc}; it may use "
                f"{', '.join('{' + k + '}' for k in TEMPLATE_FIELDS)}"
            ) from None
        if not entry.get("label"):
            raise ZSGuideError(f"{where}: a params.json template needs a label (e.g. searched10)")
        label = entry["label"]
    else:
        from pathlib import Path

        if not Path(source).is_file():
            raise ZSGuideError(f"{where}: {source!r} is neither heuristic, spectral nor an existing params.json")
        label = entry.get("label") or Path(source).stem
    if label == "heuristic" and source != "heuristic":
        raise ZSGuideError(f"{where}: the label 'heuristic' is reserved for the heuristic source")
    return ParamsSpec(str(label), source, design)


def _unique(keys: list, what: str, message: str = "label {key!r} appears twice; give each entry its own label") -> None:
    """Refuse a repeated entry of ``grid.<what>``, naming the second one."""
    seen = set()
    for i, key in enumerate(keys):
        if key in seen:
            raise ZSGuideError(f"grid.{what}[{i}]: " + message.format(key=key))
        seen.add(key)


def _check_file_source(spec: ParamsSpec, i: int, grid) -> None:
    """A params.json fits one sampler, task and step count: the grid must have exactly those."""
    from ...samplers import ParamSchedule

    params = ParamSchedule.load(spec.source)
    names = [(_task_spec(t, "").name) for t in grid.tasks]
    if list(grid.samplers) != [params.method] or set(names) != {params.task} or list(grid.steps) != [params.steps]:
        raise ZSGuideError(
            f"grid.params[{i}]: {spec.source!r} is a schedule for {params.method} on {params.task} "
            f"with {params.steps} steps; a grid with it needs exactly that sampler, task and step "
            f"count (this one has samplers {list(grid.samplers)}, tasks {names}, steps "
            f"{list(grid.steps)})"
        )


def expand_grid(grid) -> list[CellSpec]:
    """The cells of ``grid`` (the parsed ``--grid.*``), in the order samplers, tasks, steps, sigma_y, seeds, params;
    every entry checked first (:class:`ZSGuideError` naming the entry)."""
    from ...samplers import sampler_names

    for what in ("samplers", "tasks", "steps", "params", "sigma_y", "seeds"):
        if not grid[what]:
            raise ZSGuideError(f"grid.{what} is empty")
    for i, name in enumerate(grid.samplers):
        if name not in sampler_names():
            raise ZSGuideError(
                f"grid.samplers[{i}]: unknown sampler {name!r}; choose one of {', '.join(sampler_names())}"
            )
    _unique(list(grid.samplers), "samplers", "sampler {key!r} appears twice")
    tasks = [_task_spec(e, f"grid.tasks[{i}]") for i, e in enumerate(grid.tasks)]
    _unique([t.label for t in tasks], "tasks")
    _unique(
        [json.dumps([t.name, t.params], sort_keys=True, default=str) for t in tasks],
        "tasks",
        "the same task and parameters as an earlier entry",
    )
    params = [_params_spec(e, f"grid.params[{i}]") for i, e in enumerate(grid.params)]
    _unique([p.label for p in params], "params")
    for i, n in enumerate(grid.steps):
        if int(n) < 1:
            raise ZSGuideError(f"grid.steps[{i}]: must be >= 1, got {n}")
    for i, s in enumerate(grid.sigma_y):
        if not (isinstance(s, (int, float)) and math.isfinite(s) and s >= 0):
            raise ZSGuideError(f"grid.sigma_y[{i}]: must be a finite number >= 0, got {s!r}")
    for what in ("steps", "sigma_y", "seeds"):
        _unique([float(v) for v in grid[what]], what, "value {key!r} appears twice")
    for i, p in enumerate(params):
        if p.source not in ("heuristic", "spectral") and not is_template(p.source):
            _check_file_source(p, i, grid)
    cells = [
        CellSpec(s, t, int(n), p, float(sy), int(seed))
        for s in grid.samplers
        for t in tasks
        for n in grid.steps
        for sy in grid.sigma_y
        for seed in grid.seeds
        for p in params
    ]
    from pathlib import Path

    for c in cells:
        if is_template(c.params.source) and not Path(c.source).is_file():
            i = params.index(c.params)
            raise ZSGuideError(f"grid.params[{i}] ({c.params.label}): cell {c.key} has no params.json {c.source!r}")
    return cells


def digest(record: dict) -> str:
    """A short stable digest of a JSON-able record (a cell's settings): 16 hex digits of its sha256."""
    text = json.dumps(record, sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def folder_name(spec: CellSpec, cell_digest: str) -> str:
    """``<sampler>_<task>_<steps>_<params>_s<sigma>_seed<seed>-<digest>``, safe as a file name."""
    raw = f"{spec.sampler}_{spec.task.label}_{spec.steps}_{spec.params.label}_s{spec.sigma_y:g}_seed{spec.seed}"
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in raw)
    return f"{safe}-{cell_digest}"
