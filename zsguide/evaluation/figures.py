"""Figures written by the commands (matplotlib, Agg backend, nothing shown on screen)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from ..surrogate import GaussianSurrogate, SpectrumAccumulator, radial_average  # noqa: E402

CHANNEL_NAMES = {1: ["grey"], 3: ["luminance", "red-blue", "green-magenta"]}


def _save(fig, path: Path) -> Path:
    """Lay out, write (100 dpi, the folder made) and close ``fig``."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def spectrum_figure(
    surrogate: GaussianSurrogate, dataset, path: Path, true_spectrum: torch.Tensor | None = None, batch_size: int = 256
) -> Path:
    """Radially averaged power spectrum per decorrelated channel: held-out data (periodogram) against the surrogate."""
    acc = SpectrumAccumulator(*surrogate.shape)
    for batch in DataLoader(dataset, batch_size=batch_size):
        acc.update(2 * batch["image"] - 1)
    _, data_spec = acc.finish(floor=1e-12)
    f, sur = radial_average(surrogate.spectrum.cpu())
    _, dat = radial_average(data_spec)
    tru = radial_average(true_spectrum)[1] if true_spectrum is not None else None
    C = surrogate.shape[0]
    fig, axes = plt.subplots(1, C, figsize=(4 * C, 3.5), squeeze=False)
    for c, ax in enumerate(axes[0]):
        ax.loglog(f[1:], dat[c, 1:], "o", ms=3, label=f"held-out data ({int(acc.count)} images)")
        ax.loglog(f[1:], sur[c, 1:], "-", label="surrogate (training data)")
        if tru is not None:
            ax.loglog(f[1:], tru[c, 1:], "k--", lw=1, label="true spectrum")
        ax.set_title(CHANNEL_NAMES[C][c])
        ax.set_xlabel("|f| (cycles / pixel)")
        ax.set_ylabel("power (per-pixel variance, [-1, 1] units)")
        ax.legend(fontsize=7)
    return _save(fig, path)


def restoration_history_figure(records: list[dict], path: Path) -> Path:
    """Restoration PSNR and FD against the training step (:class:`~zsguide.RestorationCallback`'s records): one row
    of panels per task, one line per sampler and parameter source."""
    tasks = list(dict.fromkeys(r["task"] for r in records))
    fig, axes = plt.subplots(len(tasks), 2, figsize=(9, 3.2 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks):
        lines = list(dict.fromkeys((r["sampler"], r["source"]) for r in records if r["task"] == task))
        for sampler, source in lines:
            rs = sorted(
                (r for r in records if (r["task"], r["sampler"], r["source"]) == (task, sampler, source)),
                key=lambda r: r["step"],
            )
            style = "-" if source == "heuristic" else "--"
            for ax, key in zip(row, ("psnr", "fd")):
                ax.plot(
                    [r["step"] for r in rs], [r[key] for r in rs], style, marker="o", ms=3, label=f"{sampler} {source}"
                )
        n = next(r["num_images"] for r in records if r["task"] == task)
        row[0].set_title(f"{task}: PSNR ({n} images)", fontsize=9)
        row[1].set_title(f"{task}: spectral FD ({n} images)", fontsize=9)
        row[0].set_ylabel("PSNR (dB)")
        row[1].set_ylabel("FD")
        for ax in row:
            ax.set_xlabel("training step")
            ax.legend(fontsize=7)
    return _save(fig, path)
