"""``python -m zsguide evaluate``: sharding, device- and node-count independence, kill-and-resume, the lock, cell
invalidation, agreement with ``restore``, the report, FID, and bad grid entries refused before anything runs.

Grids run on the shipped 32x32 checkpoint (checkpoints/patches32.ckpt) with few images and steps. Multi-process runs
(Lightning's DDP with 2 devices, torchrun with 2 node ranks on loopback) are ``python -m zsguide`` subprocesses.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from zsguide.cli import main
from zsguide.runtime.lock import OutputLock
from zsguide.runtime.shard import chunks, pending_batches, shard

from .cli_helpers import ROOT, error_lines, run_cli

CKPT = ROOT / "checkpoints" / "patches32.ckpt"
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu")
# 2 samplers (one differentiates through the denoiser) x 2 tasks x 2 parameter sources, 5 images in batches of 2
GRID = (
    "--ckpt_path",
    CKPT,
    "--grid.samplers",
    "[ddrm, pigdm]",
    "--grid.tasks",
    "[sr4, {name: inpaint_random, params: {keep: 0.5}}]",
    "--grid.steps",
    "[3]",
    "--grid.params",
    "[heuristic, spectral]",
    "--grid.sigma_y",
    "[0.02]",
    "--num_images",
    "5",
    "--batch_size",
    "2",
    "--denoiser",
    "analytic",
    "--bootstrap",
    "20",
    *QUIET,
)
NUM_CELLS, NUM_IMAGES = 8, 5


def read_results(out: Path) -> list[dict]:
    """results.csv without the timing column (the only thing that may differ between equal runs)."""
    with open(out / "results.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def cell_stats(out: Path) -> list[dict]:
    cells = json.loads((out / "cells.json").read_text())["cells"]
    return [{k: v for k, v in c.items() if k not in ("compute_s", "images_per_second")} for c in cells]


def item_files(out: Path) -> list[Path]:
    return sorted(out.glob("cells/*/items/*.npz"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The grid in this process, uninterrupted (the other runs it is compared with are subprocesses)."""
    out = tmp_path_factory.mktemp("evaluate") / "ref"
    assert main(["evaluate", *map(str, GRID), "--output", str(out)]) == 0
    return out


# ----------------------------------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("num_images,batch_size", [(7, 2), (5, 5), (6, 4), (1, 3)])
def test_sharding_covers_every_pending_item_once(world, num_images, batch_size):
    indices = list(range(num_images))
    done = [set(), set(range(0, num_images, 2)), set(indices), {num_images - 1}]  # nothing, some, all, the last
    pending = pending_batches(len(done), indices, batch_size, done)
    shares = [shard(pending, r, world) for r in range(world)]
    flat = [b for s in shares for b in s]
    assert sorted(flat) == sorted(pending) and len(flat) == len(set(flat))  # no duplicates, no gaps
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # uneven counts differ by one batch at most
    items = {(c, i) for c, idx in flat for i in idx}
    for c, d in enumerate(done):  # every image not committed is in exactly one batch; fully done chunks are skipped
        assert {i for i in indices if i not in d} <= {i for cc, i in items if cc == c}
        assert all(not set(ch) <= d for cc, ch in flat if cc == c)
    for c, idx in flat:  # batches are the fixed chunks, whatever was done
        assert idx in chunks(indices, batch_size)


# ----------------------------------------------------------------------------------------- bad input, refused early


@pytest.mark.parametrize(
    "override,message",
    [
        (("--grid.samplers", "[ddrm, ddpm]"), "grid.samplers[1]: unknown sampler 'ddpm'"),
        (
            ("--grid.tasks", "[sr4, {name: inpaint_random, params: {kep: 0.3}}]"),
            "grid.tasks[1] (inpaint_random): unknown task parameter(s) kep",
        ),
        (("--grid.tasks", "[deblur]"), "grid.tasks[0]: unknown task 'deblur'"),
        (("--grid.sigma_y", "[0.02, -0.1]"), "grid.sigma_y[1]: must be a finite number >= 0, got -0.1"),
        (("--grid.params", "[heuristic, {source: spectral, trust_factor: 0.5}]"), "grid.params[1].trust_factor"),
        (("--grid.params", "[heuristic, {source: heuristic, trust_factor: 2}]"), "grid.params[1]: trust_factor"),
        (
            ("--grid.params", "[heuristic, {source: spectral, objective: psnr}]"),
            "grid.params[1].objective must be one of w2, mse, perception, pareto",
        ),
        (
            ("--grid.params", "[heuristic, {source: heuristic, objective: mse}]"),
            "grid.params[1]: trust_factor, pareto_guard, objective",
        ),
        (
            ("--grid.params", "[heuristic, {source: spectral, objective: mse}, {source: spectral, objective: mse}]"),
            "grid.params[2]: label 'spectral_mse' appears twice",
        ),
        (("--grid.steps", "[0]"), "grid.steps[0]: must be >= 1"),
        (("--grid.tasks", "[{name: inpaint_random, params: {keep: 1.5}}]"), "grid.tasks[0] (inpaint_random_keep1.5): "),
        (("--grid.params", "[heuristic, heuristic]"), "grid.params[1]: label 'heuristic' appears twice"),
        (("--grid.params", "[{source: heuristic, label: base}]"), "grid.params[0]: the heuristic source is labelled"),
        (("--grid.samplers", "[ddrm, ddrm]"), "grid.samplers[1]: sampler 'ddrm' appears twice"),
        (("--grid.tasks", "[sr4, {name: sr4, label: x4}]"), "grid.tasks[1]: the same task and parameters"),
        (("--num_images", "1"), "--num_images must be >= 2"),
        (("--fid_weights", "missing.pth"), "FID weights 'missing.pth' (--fid_weights) do not exist"),
    ],
)
def test_bad_grid_entries_are_refused_before_anything_runs(tmp_path, override, message, capsys):
    out = tmp_path / "out"
    rc = main(["evaluate", *map(str, GRID), *override, "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err[-2000:]
    assert not out.exists()


# ------------------------------------------------------------------------------------------- results and report


@pytest.mark.slow  # runs the evaluate command (the reference grid)
def test_report_files_figures_and_paired_differences(reference):
    rows = read_results(reference)
    assert len(rows) == NUM_CELLS * NUM_IMAGES
    content = json.loads((reference / "cells.json").read_text())
    cells = content["cells"]
    assert len(cells) == NUM_CELLS and all(c["status"] == "complete" and c["n"] == NUM_IMAGES for c in cells)
    for c in cells:  # the cell means and the paired differences are those of the per-image rows
        mine = [r for r in rows if (r["sampler"], r["task"], r["params"]) == (c["sampler"], c["task"], c["params"])]
        assert c["psnr_mean"] == pytest.approx(np.mean([float(r["psnr"]) for r in mine]), rel=1e-12)
        if c["params"] != "heuristic":
            twin = [r for r in rows if (r["sampler"], r["task"], r["params"]) == (c["sampler"], c["task"], "heuristic")]
            d = [float(a["psnr"]) - float(b["psnr"]) for a, b in zip(mine, twin)]
            assert c["twin"].split("/")[3] == "heuristic"
            assert c["d_psnr"] == pytest.approx(np.mean(d), abs=1e-12)
            assert c["d_psnr_se"] == pytest.approx(np.std(d, ddof=1) / np.sqrt(len(d)), rel=1e-9)
            assert c["d_fd"] == pytest.approx(c["fd"] - next(t["fd"] for t in cells if t["key"] == c["twin"]), abs=1e-9)
            assert c["d_fd_se"] > 0 and isinstance(c["worse_both"], bool)
            # better / worse only beyond 2 paired standard errors (evaluation/significance.py)
            beyond = abs(c["d_psnr"]) > 2 * c["d_psnr_se"]
            assert c["psnr_verdict"] == (("better" if c["d_psnr"] > 0 else "worse") if beyond else "within noise")
            assert c["worse_both"] == (c["psnr_verdict"] == "worse" and c["fd_verdict"] == "worse")
            mse = [float(r["mse_unclipped"]) for r in mine]
            assert c["mse_unclipped_mean"] == pytest.approx(np.mean(mse), rel=1e-12)
            assert all(float(r["mse"]) <= float(r["mse_unclipped"]) for r in mine)  # clipping only brings it closer
        assert c["fd"] > 0 and c["fd_se"] > 0
        # the cost per image (samplers/cost.py), as restore's summary counts it: a network call per step, and for
        # PiGDM a vector-Jacobian product per step
        assert c["network_calls"] == c["steps"] and c["operator_applications"] > c["steps"]
        assert c["vjps"] == (c["steps"] if c["sampler"] == "pigdm" else 0)
    with open(reference / "cells.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == NUM_CELLS
    report = (reference / "report.md").read_text()
    assert "## sr4" in report and "## inpaint_random_keep0.5" in report and "LPIPS skipped" in report
    import matplotlib.image as mpimg

    for task in ("sr4", "inpaint_random_keep0.5"):
        for kind in ("pd", "mse_fd", "steps", "cost", "examples"):
            name = f"{kind}_{task}" + ("_pigdm" if kind == "examples" else "")  # one example file per sampler
            path = reference / "figures" / f"{name}.png"
            assert f"figures/{path.name}" in report
            assert mpimg.imread(path).shape[0] > 100  # a real image
    assert len(list(reference.glob("cells/*/restored/*.png"))) == NUM_CELLS * NUM_IMAGES


@pytest.mark.slow  # runs the evaluate command (the reference grid)
def test_a_cell_gives_what_restore_gives(reference, tmp_path):
    out = tmp_path / "restore"
    rc = main(
        [
            "restore",
            "--ckpt_path",
            str(CKPT),
            "--task",
            "inpaint_random",
            "--task_params.keep",
            "0.5",
            "--sampler",
            "pigdm",
            "--steps",
            "3",
            "--params",
            "spectral",
            "--sigma_y",
            "0.02",
            "--num_images",
            str(NUM_IMAGES),
            "--batch_size",
            "3",
            "--denoiser",
            "analytic",
            "--output",
            str(out),
            *QUIET,
        ]
    )
    assert rc == 0
    with open(out / "metrics.csv", newline="") as fh:
        restored = list(csv.DictReader(fh))
    mine = [
        r
        for r in read_results(reference)
        if (r["sampler"], r["task"], r["params"]) == ("pigdm", "inpaint_random_keep0.5", "spectral")
    ]
    assert [(r["index"], r["psnr"], r["ssim"], r["mse"]) for r in mine] == [
        (r["index"], r["psnr"], r["ssim"], r["mse"]) for r in restored
    ]


@pytest.mark.slow  # runs the evaluate command (the reference grid)
def test_fewer_images_than_committed_reports_the_first_ones(reference, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    rc = main(["evaluate", *map(str, GRID), "--num_images", "3", "--output", str(copy)])
    assert rc == 0
    cells = json.loads((copy / "cells.json").read_text())
    assert cells["run"]["new_items"] == 0 and all(c["n"] == 3 and c["status"] == "complete" for c in cells["cells"])
    assert read_results(copy) == [r for r in read_results(reference) if int(r["index"]) < 3]


def test_a_params_file_must_fit_the_grid(tmp_path, capsys):
    from zsguide.checkpoint import load_score_module
    from zsguide.samplers import get_sampler

    module, _ = load_score_module(CKPT)
    path = tmp_path / "params.json"
    path.write_text(json.dumps(get_sampler("ddrm").heuristic("sr4", 3, module.schedule).to_dict()))
    rc = main(
        [
            "evaluate",
            *map(str, GRID),
            "--grid.params",
            f"[heuristic, {{source: {path}}}]",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 2 and "grid.params[1]: " in capsys.readouterr().err and not (tmp_path / "out").exists()
    rc = main(
        [
            "evaluate",
            *map(str, GRID),
            "--grid.samplers",
            "[ddrm]",
            "--grid.tasks",
            "[sr4]",
            "--grid.params",
            f"[heuristic, {{source: {path}, label: mine}}]",
            "--output",
            str(tmp_path / "ok"),
        ]
    )
    assert rc == 0
    cells = {c["params"]: c for c in json.loads((tmp_path / "ok" / "cells.json").read_text())["cells"]}
    assert cells["mine"]["psnr_mean"] == cells["heuristic"]["psnr_mean"]  # the same schedule, the same images


@pytest.mark.slow  # runs the evaluate command (the reference grid)
def test_report_only_rebuilds_the_same_report(reference, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    for name in ("results.csv", "cells.csv", "cells.json", "report.md"):
        (copy / name).unlink()
    shutil.rmtree(copy / "figures")
    rc = main(["evaluate", *map(str, GRID), "--output", str(copy), "--report_only", "true"])
    assert rc == 0
    assert read_results(copy) == read_results(reference) and cell_stats(copy) == cell_stats(reference)
    assert (copy / "figures" / "pd_sr4.png").is_file()


# ------------------------------------------------------------------------------------------ devices, nodes, resume


@pytest.mark.slow  # runs the evaluate command (the reference grid)
def test_two_ddp_devices_give_the_same_results_as_one(reference, tmp_path):
    ddp = ("--trainer.devices", "2", "--trainer.strategy", "ddp")
    proc = run_cli("evaluate", *GRID, "--output", "ddp", *ddp, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_results(tmp_path / "ddp") == read_results(reference)
    assert cell_stats(tmp_path / "ddp") == cell_stats(reference)
    assert json.loads((tmp_path / "ddp" / "cells.json").read_text())["run"]["devices"] == 2
    # a resume with fewer pending batches than ranks: rank 1 has nothing to do and must still reach the end
    item_files(tmp_path / "ddp")[3].unlink()
    proc = run_cli("evaluate", *GRID, "--output", "ddp", *ddp, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "ddp" / "cells.json").read_text())["run"]["new_items"] == 1
    assert read_results(tmp_path / "ddp") == read_results(reference)


@pytest.mark.slow  # runs the evaluate command (the reference grid)
def test_two_torchrun_nodes_on_loopback_give_the_same_results_as_one(reference, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--node_rank",
                str(r),
                "--nproc_per_node",
                "1",
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                str(port),
                "-m",
                "zsguide",
                "evaluate",
                *map(str, GRID),
                "--output",
                "nodes",
                "--trainer.num_nodes",
                "2",
                "--trainer.devices",
                "1",
                "--trainer.strategy",
                "ddp",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs[0][-2000:] + logs[1][-2000:]
    run = json.loads((tmp_path / "nodes" / "cells.json").read_text())["run"]
    assert run["num_nodes"] == 2
    assert read_results(tmp_path / "nodes") == read_results(reference)
    assert cell_stats(tmp_path / "nodes") == cell_stats(reference)


@pytest.mark.slow  # runs the evaluate command (the reference grid)
def test_kill_9_mid_grid_then_the_same_command_finishes_it_identically(reference, tmp_path):
    """The network denoiser and batches of one image make the grid slow enough to be killed in the middle. The
    reference grid's run has put the spectral cells' designs (the Gaussian surrogate's, whatever the denoiser) in
    this session's design cache, so the runs here start computing at once."""
    grid = [str(a) for a in GRID]
    grid[grid.index("--denoiser") + 1] = "network"
    grid[grid.index("--batch_size") + 1] = "1"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "zsguide", "evaluate", *grid, "--output", "run"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 600  # a bound only: the designs come first, and a loaded machine is slow
    while len(item_files(tmp_path / "run")) < 6 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(item_files(tmp_path / "run"))
    assert proc.returncode == -signal.SIGKILL and 6 <= killed_at < NUM_CELLS * NUM_IMAGES, (
        f"not killed mid-grid ({killed_at} items, rc {proc.returncode})"
    )
    assert not (tmp_path / "run" / "report.md").exists()
    (entry,) = json.loads((tmp_path / "run" / "runs.json").read_text())["runs"]  # entered when it started
    assert entry["status"] == "running" and entry["number"] == 1
    stale = tmp_path / "run" / ".runs.json.kill9.tmp"  # as a kill during the report stage leaves
    stale.write_text("half")
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    run = json.loads((tmp_path / "run" / "cells.json").read_text())["run"]
    assert run["new_items"] == NUM_CELLS * NUM_IMAGES - killed_at  # nothing redone, nothing lost
    runs = json.loads((tmp_path / "run" / "runs.json").read_text())["runs"]
    assert [(r["number"], r["status"]) for r in runs] == [(1, "interrupted"), (2, "complete")]
    assert runs[0]["started"] == entry["started"] and not stale.exists()
    whole = subprocess.run([*cmd[:-1], "whole"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert read_results(tmp_path / "run") == read_results(tmp_path / "whole")
    assert cell_stats(tmp_path / "run") == cell_stats(tmp_path / "whole")
    assert not list((tmp_path / "run").glob("cells/*/*/*.tmp*"))


@pytest.mark.slow  # runs the evaluate command (the reference grid)
def test_a_changed_setting_recomputes_that_cell_only(reference, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    before = {p.relative_to(copy): p.stat().st_mtime_ns for p in item_files(copy)}
    grid = [str(a) for a in GRID]
    grid[grid.index("--grid.params") + 1] = "[heuristic, {source: spectral, trust_factor: 3, label: spectral}]"
    rc = main(["evaluate", *grid, "--output", str(copy)])
    assert rc == 0
    run = json.loads((copy / "cells.json").read_text())["run"]
    assert run["new_items"] == 4 * NUM_IMAGES  # the 4 spectral cells; the 4 heuristic cells are reused
    heuristic = {p: t for p, t in before.items() if "_heuristic_" in str(p)}
    assert heuristic and all((copy / p).stat().st_mtime_ns == t for p, t in heuristic.items())
    new = {c["key"]: c for c in json.loads((copy / "cells.json").read_text())["cells"]}
    old = {c["key"]: c for c in json.loads((reference / "cells.json").read_text())["cells"]}
    for key in new:
        same = new[key]["folder"] == old[key]["folder"]
        assert same == key.split("/")[3].startswith("heuristic")


@pytest.mark.slow  # runs the evaluate command (the reference grid)
def test_a_second_run_into_the_same_directory_refuses(reference, tmp_path):
    out = tmp_path / "busy"
    lock = OutputLock(out, "evaluate")  # as a running evaluation holds it
    try:
        proc = run_cli("evaluate", *GRID, "--output", out, cwd=tmp_path)
        assert proc.returncode == 2
        (line,) = error_lines(proc)
        assert f"output directory {str(out)!r} is in use by another evaluate run (pid {os.getpid()}" in line
        assert not (out / "cells").exists() and not (out / "runs.json").exists()
    finally:
        lock.release()
    OutputLock(out, "evaluate").release()  # free again once the holder is gone


# ------------------------------------------------------------------------------------------------------------ FID


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A random-weight InceptionV3 saved as the state dict torch-fidelity's weights file is (the genuine format)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True):  # keep the random initialisation
            return None

    folder = tmp_path_factory.mktemp("inception")
    torch.save({}, folder / "empty.pth")
    torch.manual_seed(0)
    net = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(folder / "empty.pth"))
    torch.save(net.state_dict(), folder / "pt_inception.pth")
    return folder / "pt_inception.pth"


@pytest.mark.slow  # runs the evaluate command (the reference grid)
def test_fid_on_stored_features_is_torchmetrics_fid(inception_weights):
    from torchmetrics.image.fid import FrechetInceptionDistance

    from zsguide.evaluation.fid import inception_features, load_inception
    from zsguide.evaluation.perception import frechet_distance_features

    g = torch.Generator().manual_seed(1)
    real, fake = torch.rand(6, 3, 32, 32, generator=g), torch.rand(5, 3, 32, 32, generator=g) ** 2
    net = load_inception(inception_weights)
    ours = frechet_distance_features(inception_features(net, fake), inception_features(net, real))
    fid = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=str(inception_weights))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    assert ours == pytest.approx(float(fid.compute()), rel=1e-3)


def test_unsafe_fid_weights_are_refused(tmp_path):
    from zsguide.errors import ZSGuideError
    from zsguide.evaluation.fid import load_inception

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, path)
    with pytest.raises(ZSGuideError, match="refused to load FID weights file"):
        load_inception(path)


@pytest.mark.slow  # runs the evaluate command (the reference grid)
def test_evaluate_reports_fid_and_lpips_with_local_weights(inception_weights, tmp_path):
    import torchvision

    lpips = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), lpips)  # the genuine format, random weights
    grid = [str(a) for a in GRID]
    grid[grid.index("--grid.samplers") + 1] = "[ddrm]"
    grid[grid.index("--grid.tasks") + 1] = "[sr4]"
    rc = main(
        [
            "evaluate",
            *grid,
            "--num_images",
            "4",
            "--fid_weights",
            str(inception_weights),
            "--lpips_weights",
            str(lpips),
            "--output",
            str(tmp_path / "fid"),
        ]
    )
    assert rc == 0
    cells = json.loads((tmp_path / "fid" / "cells.json").read_text())["cells"]
    assert all(c["fid"] >= 0 and c["fid_se"] >= 0 and c["lpips_mean"] >= 0 for c in cells)
    assert "d_fid" in cells[1] and "d_lpips" in cells[1]
    report = (tmp_path / "fid" / "report.md").read_text()
    assert "FID" in report and "LPIPS" in report and "skipped" not in report
    with open(tmp_path / "fid" / "results.csv", newline="") as fh:
        assert all(float(r["lpips"]) >= 0 for r in csv.DictReader(fh))
