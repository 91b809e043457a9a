"""The report's figures (matplotlib, Agg): per task, the perception-distortion plane, PSNR and FD against the number
of steps, and a grid of example restorations.

- ``pd_<task>.png``: one panel per (steps, sigma_y); x = PSNR (dB, higher is better), y = FD (log scale, lower is
  better); one colour per sampler, one marker per parameter source, an arrow from each heuristic cell to every other
  source's cell of the same sampler (and seed).
- ``mse_fd_<task>.png``: the same trade on the (MSE, FD) plane, one panel per (steps, sigma_y, sampler), lower-left
  is better; one colour per parameter source, an arrow from the heuristic to each: where each design objective
  (``--objective``) lands against the heuristic.
- ``steps_<task>.png``: PSNR and FD against the number of steps, a line per (sampler, parameter source), at the first
  sigma_y and seed of the grid.
- ``examples_<task>_<sampler>.png``: one file per sampler; rows = the first ``--examples`` images; columns = clean,
  measurement, then every parameter source, at the grid's largest step count, first sigma_y and seed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MARKERS = "osD^v<>pX*h"


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in label)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _order(values):
    return list(dict.fromkeys(values))


def perception_distortion(plan, records: list[dict], task: str, path: Path) -> Path | None:
    rows = [r for r in records if r["task"] == task and r.get("fd") is not None and r.get("psnr_mean") is not None]
    if not rows:
        return None
    panels = _order((r["steps"], r["sigma_y"]) for r in rows)
    samplers = _order(c.spec.sampler for c in plan.cells)
    sources = _order(c.spec.params.label for c in plan.cells)
    colours = {s: plt.cm.tab10(i % 10) for i, s in enumerate(samplers)}
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, (steps, sigma) in zip(axes[0], panels):
        here = [r for r in rows if (r["steps"], r["sigma_y"]) == (steps, sigma)]
        by_key = {r["key"]: r for r in here}
        for r in here:
            ax.scatter(
                r["psnr_mean"],
                max(r["fd"], 1e-6),
                color=colours[r["sampler"]],
                marker=MARKERS[sources.index(r["params"]) % len(MARKERS)],
                s=40,
                zorder=3,
            )
            twin = by_key.get(r.get("twin"))
            if twin is not None:
                ax.annotate(
                    "",
                    xy=(r["psnr_mean"], max(r["fd"], 1e-6)),
                    xytext=(twin["psnr_mean"], max(twin["fd"], 1e-6)),
                    arrowprops={"arrowstyle": "->", "color": colours[r["sampler"]], "lw": 1.2},
                )
        ax.set_yscale("log")
        ax.set_xlabel("PSNR (dB)  ->  better")
        ax.set_ylabel("Frechet spectral distance (lower is better)")
        ax.set_title(f"{task}, {steps} steps, sigma_y {sigma:g}")
        ax.grid(True, which="both", alpha=0.3)
    handles = [plt.Line2D([], [], color=colours[s], marker="o", ls="", label=s) for s in samplers]
    handles += [
        plt.Line2D([], [], color="grey", marker=MARKERS[i % len(MARKERS)], ls="", label=p)
        for i, p in enumerate(sources)
    ]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def mse_fd_plane(plan, records: list[dict], task: str, path: Path, columns: int = 3) -> Path | None:
    rows = [r for r in records if r["task"] == task and r.get("fd") is not None and r.get("mse_mean") is not None]
    if not rows:
        return None
    panels = [
        (steps, sigma, sampler)
        for steps, sigma in _order((r["steps"], r["sigma_y"]) for r in rows)
        for sampler in _order(r["sampler"] for r in rows)
    ]
    sources = _order(c.spec.params.label for c in plan.cells)
    colours = {p: plt.cm.tab10(i % 10) for i, p in enumerate(sources)}
    by_key = {r["key"]: r for r in rows}
    ncol = min(columns, len(panels))
    nrow = -(-len(panels) // ncol)
    legend_rows = -(-len(sources) // 5)
    height = 3.4 * nrow + 0.5 + 0.25 * legend_rows
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, height), squeeze=False)
    for ax, (steps, sigma, sampler) in zip(axes.flat, panels):
        here = [r for r in rows if (r["steps"], r["sigma_y"], r["sampler"]) == (steps, sigma, sampler)]
        for r in here:
            ax.scatter(
                r["mse_mean"],
                r["fd"],
                color=colours[r["params"]],
                s=36,
                zorder=3,
                marker=MARKERS[sources.index(r["params"]) % len(MARKERS)],
            )
            twin = by_key.get(r.get("twin"))
            if twin is not None:
                ax.annotate(
                    "",
                    xy=(r["mse_mean"], r["fd"]),
                    xytext=(twin["mse_mean"], twin["fd"]),
                    arrowprops={"arrowstyle": "->", "color": colours[r["params"]], "lw": 1.0},
                )
        ax.ticklabel_format(axis="both", style="sci", scilimits=(-2, 3))
        ax.set_title(f"{sampler}, {steps} steps, sigma_y {sigma:g}", fontsize=9)
        ax.set_xlabel("MSE per pixel ([0, 1] units)", fontsize=8)
        ax.set_ylabel("Frechet spectral distance", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles = [
        plt.Line2D([], [], color=colours[p], marker=MARKERS[i % len(MARKERS)], ls="", label=p)
        for i, p in enumerate(sources)
    ]
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=min(len(sources), 5))
    fig.suptitle(
        f"{task}: MSE against FD, lower-left is better; arrows from the heuristic (paired standard errors "
        f"in the tables)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, (0.1 + 0.25 * legend_rows) / height, 1, 1 - 0.35 / height))
    return _save(fig, path)


def against_steps(plan, records: list[dict], task: str, path: Path, x: str = "steps") -> Path | None:
    """PSNR and FD against ``x``: the step count, or ``network_calls`` per image (samplers compared at equal cost:
    DAPS calls the network 5 times a level, DPS and PiGDM add a vector-Jacobian product per step, ``vjps`` in
    cells.csv)."""
    sigma0, seed0 = plan.cells[0].spec.sigma_y, plan.cells[0].spec.seed
    rows = [
        r
        for r in records
        if r["task"] == task
        and r["sigma_y"] == sigma0
        and r["seed"] == seed0
        and r.get("psnr_mean") is not None
        and r.get(x) is not None
    ]
    if not rows:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    samplers = _order(r["sampler"] for r in rows)
    sources = _order(r["params"] for r in rows)
    for si, s in enumerate(samplers):
        for pi, p in enumerate(sources):
            line = sorted((r for r in rows if r["sampler"] == s and r["params"] == p), key=lambda r: r[x])
            if not line:
                continue
            style = {
                "color": plt.cm.tab10(si % 10),
                "marker": MARKERS[pi % len(MARKERS)],
                "ls": "-" if p == "heuristic" else "--",
                "label": f"{s} {p}",
            }
            a1.plot([r[x] for r in line], [r["psnr_mean"] for r in line], **style)
            fd = [(r[x], r["fd"]) for r in line if r.get("fd") is not None]
            if fd:
                a2.plot(*zip(*fd), **style)
    for ax, name in ((a1, "PSNR (dB)"), (a2, "Frechet spectral distance")):
        ax.set_xscale("log")
        ax.set_xlabel("steps" if x == "steps" else "network calls per image")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    a2.set_yscale("log")
    a1.set_title(f"{task}, sigma_y {sigma0:g}")
    a2.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def examples(plan, records: list[dict], data: list[dict], task: str, sampler: str, path: Path) -> Path | None:
    """One sampler on one task: a row per example image, a column per parameter source (after the clean image and the
    measurement), at the grid's largest step count, first sigma_y and seed: readable at a glance however many
    samplers the grid has (one file each)."""
    if plan.examples < 1:
        return None
    spec0 = plan.cells[0].spec
    cells = [
        (c, d)
        for c, d in zip(plan.cells, data)
        if c.spec.task.label == task
        and c.spec.sampler == sampler
        and c.spec.sigma_y == spec0.sigma_y
        and c.spec.seed == spec0.seed
    ]
    if not cells:
        return None
    top = max(c.spec.steps for c, _ in cells)
    cells = [(c, d) for c, d in cells if c.spec.steps == top]
    shown = sorted(set().union(*(d["examples"].keys() for _, d in cells)))[: plan.examples]
    if not shown:
        return None
    cols = 2 + len(cells)
    fig, axes = plt.subplots(len(shown), cols, figsize=(1.5 * cols, 1.6 * len(shown) + 0.5), squeeze=False)

    def show(ax, img, title=None):
        arr = np.clip(np.asarray(img, dtype=np.float32), 0, 1).transpose(1, 2, 0)
        ax.imshow(
            arr[..., 0] if arr.shape[2] == 1 else arr,
            cmap="gray" if arr.shape[2] == 1 else None,
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        if title:
            ax.set_title(title, fontsize=6)

    for row, index in enumerate(shown):
        truth = plan.test_split[index]["image"].numpy()
        first = next((d["examples"][index] for _, d in cells if index in d["examples"]), None)
        show(axes[row][0], truth, "clean" if row == 0 else None)
        if first is not None:
            m = first[1]
            if m.shape[-2:] != truth.shape[-2:]:  # super-resolution: show the low-resolution image upsampled
                f = truth.shape[-1] // m.shape[-1]
                m = m.repeat(f, axis=-2).repeat(f, axis=-1)
            show(axes[row][1], m, "measurement" if row == 0 else None)
        for col, (c, d) in enumerate(cells, start=2):
            ax = axes[row][col]
            if index in d["examples"]:
                show(ax, d["examples"][index][0], c.spec.params.label if row == 0 else None)
            else:
                ax.axis("off")
    fig.suptitle(f"{sampler} on {task}, {top} steps, sigma_y {spec0.sigma_y:g}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def write_figures(plan, records: list[dict], data: list[dict], folder: Path) -> dict[str, list[Path]]:
    """Every figure of every task; ``{task: [paths]}`` (a figure with nothing to show is left out)."""
    out = {}
    for task in _order(c.spec.task.label for c in plan.cells):
        name = _safe(task)
        paths = [
            perception_distortion(plan, records, task, folder / f"pd_{name}.png"),
            mse_fd_plane(plan, records, task, folder / f"mse_fd_{name}.png"),
            against_steps(plan, records, task, folder / f"steps_{name}.png"),
            against_steps(plan, records, task, folder / f"cost_{name}.png", x="network_calls"),
        ]
        paths += [
            examples(plan, records, data, task, sampler, folder / f"examples_{name}_{_safe(sampler)}.png")
            for sampler in _order(c.spec.sampler for c in plan.cells)
        ]
        out[task] = [p for p in paths if p is not None]
    return out
