"""Parameter sources side by side, from an ``evaluate`` run's cells.json: per sampler x task x steps, each source's
paired difference to the heuristic, ΔPSNR (paired SE) and ΔFD (paired bootstrap SE), marked ``**`` where the source
is worse than the heuristic on both; then, per source, how many cells are worse on both, and how many are better
or worse on PSNR, on FD, and better on both. Every verdict is the 2-standard-error rule of
zsguide/evaluation/significance.py (▲ better, ▼ worse beyond 2 paired SEs; unmarked: within noise), recomputed from
the cells' differences and SEs, so older runs count the same way.

    python benchmarks/compare_sources.py benchmarks/results/evaluate_objectives20/cells.json \
        --sources spectral spectral_calibrated spectral_mse spectral_perception spectral_pareto

Prints a markdown table (for docs/benchmarks.md); ``--json FILE`` also writes the counts.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from zsguide.evaluation.significance import metric_verdict

ARROW = {"better": " ▲", "worse": " ▼"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cells", help="cells.json of an evaluate run")
    ap.add_argument("--sources", nargs="+", required=True, help="parameter-source labels (columns)")
    ap.add_argument("--skip", nargs="*", default=["oracle"], help="samplers left out (default: the oracle)")
    ap.add_argument("--json", default=None, help="also write the per-source counts here")
    args = ap.parse_args()
    cells = json.load(open(args.cells))["cells"]
    by = {(c["sampler"], c["task"], c["steps"], c["params"]): c for c in cells}
    rows = sorted(
        {(c["sampler"], c["task"], c["steps"]) for c in cells if c["sampler"] not in args.skip},
        key=lambda r: (r[2], [c["sampler"] for c in cells].index(r[0]), [c["task"] for c in cells].index(r[1])),
    )
    head = "| sampler | task | steps | " + " | ".join(f"{s} ΔPSNR | ΔFD" for s in args.sources) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(args.sources))]
    counts = defaultdict(lambda: defaultdict(int))
    for sampler, task, steps in rows:
        cols = []
        for s in args.sources:
            c = by.get((sampler, task, steps, s))
            if c is None or c.get("d_psnr") is None or c.get("d_fd") is None:
                cols += ["", ""]
                continue
            vp, vf = metric_verdict(c, "psnr"), metric_verdict(c, "fd")  # recomputed: older cells lack verdicts
            worse = vp == "worse" and vf == "worse"
            mark = "**" if worse else ""
            cols += [
                f"{mark}{c['d_psnr']:+.2f} ({c['d_psnr_se']:.2f}){ARROW.get(vp, '')}{mark}",
                f"{mark}{c['d_fd']:+.2f} ({c['d_fd_se']:.2f}){ARROW.get(vf, '')}{mark}",
            ]
            k = counts[s]
            k["cells"] += 1
            k["worse_both"] += worse
            k["psnr_gain"] += vp == "better"
            k["psnr_loss"] += vp == "worse"
            k["fd_gain"] += vf == "better"
            k["fd_loss"] += vf == "worse"
            k["both_gain"] += vp == "better" and vf == "better"
            k["psnr_or_fd_gain"] += vp == "better" or vf == "better"
        lines.append(f"| {sampler} | {task} | {steps} | " + " | ".join(cols) + " |")
    lines += [
        "",
        "| source | cells | worse on both | PSNR better | PSNR worse | FD better | FD worse | better on both | "
        "PSNR or FD better |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in args.sources:
        k = counts[s]
        lines.append(
            f"| {s} | {k['cells']} | {k['worse_both']} | {k['psnr_gain']} | {k['psnr_loss']} | {k['fd_gain']} | "
            f"{k['fd_loss']} | {k['both_gain']} | {k['psnr_or_fd_gain']} |"
        )
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({s: dict(counts[s]) for s in args.sources}, f, indent=1)


if __name__ == "__main__":
    main()
