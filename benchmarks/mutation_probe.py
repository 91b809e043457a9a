"""Mutation probe (issue 23, item 5): perturb each shared coefficient function by 1% and record which tests fail.

Each mutation (benchmarks/mutation_plugin.py: one output of ``ddrm_coefficients``, ``ddnm_coefficients``,
``pigdm_coefficients``, ``diffpir_coefficients``, ``dps_gain``, ``ddim_coefficients`` or ``DiffPIR.rho`` times 1.01,
or one sampler's ``step`` alone with its ``x_{t-1}`` times 1.01) is applied in memory inside a pytest subprocess
(``-p benchmarks.mutation_plugin``, ``ZSGUIDE_MUTATION=<name>``); no file of the package is edited. Each run takes a
fixed selection of test files with ``-m "not slow"``; the failing test files are read from a JUnit XML report and
classified as

- independent: written without the package's coefficient functions (``test_reference_*``,
  ``test_deepinv_agreement``, ``test_criteria_independent``), so a mutation they catch is caught for real;
- shared: sync and Monte Carlo tests whose two sides call the same coefficient function (the rest).

The unmutated baseline runs first and must pass. Results go to benchmarks/results/mutation_probe.json and a markdown
table is printed::

    nice .venv/bin/python benchmarks/mutation_probe.py [--only NAME ...] [--files FILE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.mutation_plugin import all_mutations  # noqa: E402

FILES = [
    "tests/test_reference_ddrm_ddnm.py",
    "tests/test_reference_pigdm_dps_diffpir.py",
    "tests/test_transfer_sync.py",
    "tests/test_adding_a_sampler.py",
    "tests/test_criteria_independent.py",
    "tests/test_deepinv_agreement.py",
    "tests/test_samplers.py",
]
INDEPENDENT = ("test_reference_", "test_deepinv_agreement", "test_criteria_independent")
OUT = ROOT / "benchmarks" / "results" / "mutation_probe.json"


def independent(path: str) -> bool:
    return Path(path).name.startswith(INDEPENDENT)


def file_of(classname: str, files: list[str]) -> str:
    """The test file of a JUnit ``classname`` (``tests.test_x`` or ``tests.test_x.TestClass``)."""
    for f in files:
        module = f.removesuffix(".py").replace("/", ".")
        if classname == module or classname.startswith(module + "."):
            return f
    return classname or "?"


def run(mutation: str, files: list[str], keyword: str = "") -> dict:
    """One pytest subprocess under ``mutation`` ("" for the baseline): failing tests grouped by file."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "report.xml"
        env = dict(os.environ, ZSGUIDE_MUTATION=mutation)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "benchmarks.mutation_plugin"]
        cmd += ["-m", "not slow", f"--junitxml={xml}", *files] + (["-k", keyword] if keyword else [])
        start = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.time() - start
        failing: dict[str, list[str]] = {}
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        if xml.exists():
            for case in ET.parse(xml).getroot().iter("testcase"):
                counts["tests"] += 1
                kinds = {child.tag for child in case}
                if "skipped" in kinds:
                    counts["skipped"] += 1
                if kinds & {"failure", "error"}:
                    counts["failures" if "failure" in kinds else "errors"] += 1
                    path = file_of(case.get("classname", ""), files)
                    failing.setdefault(path, []).append(case.get("name", "?"))
    tail = "\n".join(proc.stdout.strip().splitlines()[-3:])
    return {
        "returncode": proc.returncode,
        "seconds": round(seconds, 1),
        "counts": counts,
        "failing": failing,
        "summary": tail,
    }


def row(name: str, result: dict) -> str:
    ind = sorted(Path(f).name for f in result["failing"] if independent(f))
    shared = sorted(Path(f).name for f in result["failing"] if not independent(f))
    fmt = lambda names: ", ".join(f"`{n}`" for n in names) or "none"  # noqa: E731
    return f"| `{name}` | {fmt(ind)} | {fmt(shared)} | {'yes' if ind else '**no**'} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="mutation names (default: all)")
    ap.add_argument("--files", nargs="*", help="test files (default: the fixed selection)")
    ap.add_argument("--out", type=Path, default=OUT, help="the JSON record (default: %(default)s)")
    ap.add_argument("-k", dest="keyword", default="", help="pytest -k expression narrowing the selection")
    args = ap.parse_args()
    files = [f for f in (args.files or FILES) if (ROOT / f).exists()]
    missing = sorted(set(args.files or FILES) - set(files))
    mutations = args.only or all_mutations()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    record = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit.stdout.strip(),
        "factor": 1.01,
        "files": files,
        "keyword": args.keyword,
        "command": " ".join(["python", "benchmarks/mutation_probe.py", *sys.argv[1:]]),
        "missing_files": missing,
        "complete": False,
        "mutations": {},
    }
    start = time.time()
    base = run("", files, args.keyword)
    record["baseline"] = base
    print(f"baseline: {base['summary']} ({base['seconds']} s)", flush=True)
    if base["returncode"] != 0 or base["failing"]:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        sys.exit(f"the unmutated baseline fails: {base['failing']}")
    for name in mutations:
        result = run(name, files, args.keyword)
        result["caught_independently"] = any(independent(f) for f in result["failing"])
        record["mutations"][name] = result
        print(row(name, result), f"({result['seconds']} s)", flush=True)
        record["seconds"] = round(time.time() - start, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")  # partial results survive an interrupted run
    record["complete"] = True
    record["seconds"] = round(time.time() - start, 1)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print()
    print("| mutation (x1.01) | failing files (independent) | failing files (shared) | caught independently |")
    print("|---|---|---|---|")
    for name, result in record["mutations"].items():
        print(row(name, result))
    missed = [n for n, r in record["mutations"].items() if not r["caught_independently"]]
    print(f"\nnot caught independently: {', '.join(missed) or 'none'}; {record['seconds']} s in all")


if __name__ == "__main__":
    main()
