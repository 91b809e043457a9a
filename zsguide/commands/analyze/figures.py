"""Figures of ``analyze``: transfer functions, designed schedules against t, averaged W2 against the step count.

Drawn for speed (``_finish``): fixed margins instead of ``tight_layout`` (which measures every tick label's extent
and took about 9 s of a 23 s ``analyze`` run, docs/benchmarks.md), plain log tick labels instead of mathtext, and
legends at a fixed corner instead of ``loc="best"``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import LogFormatter  # noqa: E402

from ...samplers import get_sampler  # noqa: E402
from ...surrogate import radial_average  # noqa: E402


def _finish(fig, path: Path) -> None:
    """Fixed margins (room for the tick and axis labels), minor ticks off, saved and closed."""
    for ax in fig.axes:
        ax.minorticks_off()
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":  # plain "1e-05" labels: no mathtext layout
                axis.set_major_formatter(LogFormatter())
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.12, top=0.9, wspace=0.35, hspace=0.35)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def transfer_figure(problem, transfers: dict, path: Path) -> None:
    """Radially averaged, luminance channel, per frequency: the power of the output mean ``diag(B Cov[y] B^H)``
    against the posterior mean's ``diag(W Cov[y] W^H)`` (top; for blur this is ``|B_k|^2 E|y_k|^2`` against
    ``|W_k|^2 E|y_k|^2``) and the output variance given y ``diag(V)`` against ``diag(Sigma_post)`` (bottom)."""
    W, post = problem.posterior()
    ey = problem.y_cov()

    def mean_power(B):
        return problem.frequency_diagonal(B @ ey @ B.mH if B.shape[-1] > 1 else B * ey * B.conj().mT)

    names = sorted({name for name, _ in transfers})
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 6), squeeze=False)
    f, w = radial_average(mean_power(W)[:1])
    _, vp = radial_average(problem.frequency_diagonal(post)[:1])
    for j, name in enumerate(names):
        for label, style in (("heuristic", "--"), ("spectral", "-")):
            tr = transfers.get((name, label))
            if tr is None:
                continue
            axes[0, j].loglog(
                f[1:], radial_average(mean_power(tr.B)[:1])[1][0][1:].clamp(min=1e-12), style, label=label
            )
            axes[1, j].loglog(
                f[1:],
                radial_average(problem.frequency_diagonal(tr.V)[:1])[1][0][1:].clamp(min=1e-12),
                style,
                label=label,
            )
        axes[0, j].loglog(f[1:], w[0][1:].clamp(min=1e-12), "k:", label="posterior")
        axes[1, j].loglog(f[1:], vp[0][1:].clamp(min=1e-12), "k:", label="posterior")
        axes[0, j].set_title(name)
        axes[1, j].set_xlabel("|f| (cycles / pixel)")
    axes[0, 0].set_ylabel("power of the output mean")
    axes[1, 0].set_ylabel("output variance given y")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    _finish(fig, path)


def schedule_figure(schedules: dict, path: Path) -> None:
    """Each sampler's knobs against t: heuristic (dashed) and designed (solid), one colour per step count."""
    rows = [(name, knob) for name, per_steps in schedules.items() for knob in next(iter(per_steps.values()))[0].values]
    fig, axes = plt.subplots(1, max(len(rows), 1), figsize=(3.2 * max(len(rows), 1), 3), squeeze=False)
    for ax, (name, knob) in zip(axes[0], rows):
        for k, (steps, (heur, designed)) in enumerate(sorted(schedules[name].items())):
            colour = f"C{k}"
            ax.plot(heur.timesteps, heur.values[knob], "--", color=colour, lw=1)
            ax.plot(designed.timesteps, designed.values[knob], "-", color=colour, label=f"{steps} steps")
        ax.set_title(f"{name}: {knob}")
        ax.set_xlabel("t")
        if get_sampler(name).knob(knob).domain == "positive":
            ax.set_yscale("log")
        ax.legend(fontsize=7, loc="upper right")
    _finish(fig, path)


def steps_figure(result: dict, path: Path) -> None:
    """Averaged W2^2 against the number of steps, heuristic (dashed) and designed (solid)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for k, (name, e) in enumerate(result["samplers"].items()):
        sweep = e.get("sweep")
        if not sweep:
            continue
        steps = sorted(int(n) for n in sweep)
        ax.loglog(steps, [sweep[str(n)]["heuristic"]["avg_w2"] for n in steps], "--o", color=f"C{k}", ms=3)
        ax.loglog(steps, [sweep[str(n)]["spectral"]["avg_w2"] for n in steps], "-o", color=f"C{k}", ms=3, label=name)
    ax.set_xlabel("steps")
    ax.set_ylabel("avg W2^2 per pixel ([0, 1] units)")
    ax.legend(fontsize=7, loc="upper right")
    _finish(fig, path)
