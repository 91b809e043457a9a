"""``report.md``: what ran, one table per task (mean ± standard error; differences against the heuristic twin with
their paired standard errors), the flagged and failed cells, and the figures."""

from __future__ import annotations

import math

from ...evaluation.significance import NOISE_SES, VERDICTS


def _num(v, digits: int) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _pm(r: dict, name: str, digits: int) -> str:
    mean = r.get(f"{name}_mean", r.get(name))
    if mean is None:
        return ""
    se = r.get(f"{name}_se")
    return _num(mean, digits) + (f" ± {_num(se, digits)}" if se is not None else "")


def _diff(r: dict, name: str, digits: int) -> str:
    d = r.get(f"d_{name}")
    if d is None:
        return ""
    se = r.get(f"d_{name}_se")
    mark = {"better": " ▲", "worse": " ▼"}.get(r.get(f"{name}_verdict") or "", "")
    return f"{d:+.{digits}f}" + (f" ({_num(se, digits)})" if se is not None else "") + mark


def _run_line(run: dict) -> str:
    if run.get("status") in ("running", "interrupted", "error"):
        why = f": {run['error']}" if run.get("error") else ""
        return f"{run.get('started')}: {run['status']}{why}, `{run.get('command', '')}`"
    if run.get("report_only"):
        return f"{run.get('started')}: report only, `{run.get('command', '')}`"
    if run.get("new_items", 0) == 0 and run.get("wall_time_s", 0) == 0:
        return f"{run.get('started')}: every image already committed (report only), `{run.get('command', '')}`"
    return (
        f"{run.get('started')}: {run['new_items']} new images in {run.get('wall_time_s', 0):.1f} s on "
        f"{run.get('devices', 1)} device(s) x {run.get('num_nodes', 1)} node(s) ({run.get('accelerator')}, "
        f"{run.get('precision')}), `{run.get('command', '')}`"
        + (f"; failed cells: {', '.join(run['failed_cells'])}" if run.get("failed_cells") else "")
    )


def report_markdown(plan, records: list[dict], floor: dict | None, runs: list[dict], figures: dict) -> str:
    has_lpips = any("lpips_mean" in r for r in records)
    has_fid = any("fid" in r for r in records)
    cells = plan.cells
    axes = {
        "samplers": list(dict.fromkeys(c.spec.sampler for c in cells)),
        "tasks": list(dict.fromkeys(c.spec.task.label for c in cells)),
        "steps": list(dict.fromkeys(c.spec.steps for c in cells)),
        "params": list(dict.fromkeys(c.spec.params.label for c in cells)),
        "sigma_y": list(dict.fromkeys(c.spec.sigma_y for c in cells)),
        "seeds": list(dict.fromkeys(c.spec.seed for c in cells)),
    }
    done = sum(r["n"] for r in records)
    lines = [
        "# zsguide evaluation",
        "",
        f"- checkpoint: `{plan.ckpt_path}`; data: {plan.data_options.get('name')} test split, the first "
        f"{len(plan.indices)} images ({plan.image_shape[1]}x{plan.image_shape[2]}x{plan.image_shape[0]}); "
        f"{plan.denoiser} denoiser; sigma_y in {plan.noise_convention} units",
        "- grid: " + "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in axes.items()),
        f"- {len(records)} cells, {done} of {plan.total_items} images committed, by {len(runs)} run(s) into this "
        f"directory (runs.json):",
        *(f"  - {_run_line(r)}" for r in runs),
        "- FD: the Frechet distance on spectral statistics (zsguide/evaluation/perception.py) between the restored set "
        "(clipped to [0, 1]) and the same clean images, ± its paired bootstrap standard error "
        f"({plan.bootstrap} resamples); Δ: cell - heuristic twin on the same images, (paired standard error), "
        f"▲ better / ▼ worse beyond {NOISE_SES:g} paired standard errors, unmarked: within noise "
        "(zsguide/evaluation/significance.py)",
    ]
    if floor is not None:
        lines.append(
            f"- clean floor: FD {floor['fd']:.3f}"
            + (f" ± {floor['fd_se']:.3f}" if floor.get("fd_se") is not None else "")
            + f" ({floor['what']})"
        )
    lines += [f"- {note}" for note in plan.notes]
    head = ["sampler", "steps", "sigma_y", "seed", "params", "n", "PSNR", "SSIM", "MSE", "FD"]
    head += ["LPIPS"] * has_lpips + ["FID"] * has_fid + ["ΔPSNR", "ΔSSIM", "ΔFD"] + ["ΔFID"] * has_fid
    head += ["worse on both", "s / image"]
    for task in axes["tasks"]:
        lines += ["", f"## {task}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in (r for r in records if r["task"] == task):
            if r["n"] == 0:
                status = "failed: " + r["failures"][0][:120] if r["failures"] else "not run"
                lines.append(
                    f"| {r['sampler']} | {r['steps']} | {r['sigma_y']:g} | {r['seed']} | {r['params']} | 0 | "
                    f"{status.replace('|', '/')} |" + " |" * (len(head) - 7)
                )
                continue
            row = [
                r["sampler"],
                str(r["steps"]),
                f"{r['sigma_y']:g}",
                str(r["seed"]),
                r["params"],
                str(r["n"]) + ("" if r["status"] == "complete" else f" ({r['status']})"),
                _pm(r, "psnr", 2),
                _pm(r, "ssim", 3),
                _pm(r, "mse", 5),
                _pm(r, "fd", 3),
            ]
            row += [_pm(r, "lpips", 3)] * has_lpips + [_pm(r, "fid", 2)] * has_fid
            row += [_diff(r, "psnr", 2), _diff(r, "ssim", 3), _diff(r, "fd", 3)] + [_diff(r, "fid", 2)] * has_fid
            row += [
                "**yes**" if r.get("worse_both") else ("no" if "worse_both" in r else ""),
                _num((r.get("compute_s") or 0) / max(r["n"], 1), 3),
            ]
            lines.append("| " + " | ".join(row) + " |")
        for path in figures.get(task, []):
            lines += ["", f"![{path.stem}](figures/{path.name})"]
    flagged = [r["key"] for r in records if r.get("worse_both")]
    failed = [f"{r['key']}: {r['failures'][0]}" for r in records if r["failures"]]
    lines += [
        "",
        "## Summary",
        "",
        f"- cells worse than their heuristic twin on both PSNR and FD (each beyond {NOISE_SES:g} paired standard "
        f"errors): {len(flagged)} of {sum('worse_both' in r for r in records)}"
        + (f" ({', '.join(flagged)})" if flagged else ""),
    ]
    for name, title in (("psnr", "PSNR"), ("fd", "FD")):
        got = [r[f"{name}_verdict"] for r in records if r.get(f"{name}_verdict")]
        if got:
            lines.append(
                f"- {title} against the heuristic twin: "
                + ", ".join(f"{got.count(v)} {v}" for v in VERDICTS)
                + f" (of {len(got)} cells)"
            )
    lines += [f"- failed: {f}" for f in failed]
    return "\n".join(lines) + "\n"
