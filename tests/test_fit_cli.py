"""``python -m zsguide fit`` / ``test`` end to end (subprocesses), the checkpoint, DDP, and the clear errors."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from zsguide.checkpoint import load_gaussian_prior, load_score_module
from zsguide.cli import main
from zsguide.data import ImageDataModule
from zsguide.surrogate import SpectrumAccumulator

from .cli_helpers import TINY, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    work = tmp_path_factory.mktemp("fit")
    proc = run_cli("fit", "--config", TINY, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = work / "runs" / "tiny" / "version_0"
    return work, run


def test_fit_writes_checkpoint_figure_and_samples(fitted):
    _, run = fitted
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "spectrum.png").stat().st_size > 1000
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step000002.png", "step000004.png"]
    assert (run / "config.yaml").is_file()
    # the restoration callback (tests/configs/tiny_gaussian.yaml): numbers per validation, grids, the figure
    rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r.get("restoration/sr2/dps/spectral/psnr")]
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert all(math.isfinite(float(r["restoration/sr2/ddrm/heuristic/fd"])) for r in rows)
    assert sorted(p.name for p in (run / "restoration").iterdir()) == ["step000002_sr2.png", "step000004_sr2.png"]
    assert (run / "restoration.png").stat().st_size > 1000


def test_checkpoint_round_trip_and_surrogate(fitted, tmp_path):
    _, run = fitted
    module, meta = load_score_module(run / "checkpoints" / "last.ckpt")
    assert meta["image_shape"] == [3, 16, 16] and meta["data"]["name"] == "gaussian" and meta["data"]["seed"] == 0
    assert meta["schedule"]["num_timesteps"] == 1000 and meta["surrogate_digest"] == module.surrogate.digest()
    # the light loader of analyze and tune (no network): the same surrogate and schedule
    prior = load_gaussian_prior(run / "checkpoints" / "last.ckpt")
    assert prior.surrogate.digest() == module.surrogate.digest() and prior.schedule == module.schedule
    assert torch.equal(prior.surrogate.spectrum, module.surrogate.spectrum)
    # the stored surrogate is the one of the training split
    dm = ImageDataModule(name="gaussian", image_size=16, n_train=64)
    acc = SpectrumAccumulator(3, 16, 16)
    for b in DataLoader(dm.dataset("train"), batch_size=64):
        acc.update(2 * b["image"] - 1)
    mean, spec = acc.finish(module.hparams.spectrum_floor)
    assert torch.allclose(module.surrogate.spectrum, spec, rtol=1e-10) and torch.allclose(module.surrogate.mean, mean)
    # save and load again: identical denoiser outputs
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 500])
    before = module.network_denoiser()(x, t)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["state_dict"] = module.state_dict()
    torch.save(ckpt, tmp_path / "again.ckpt")
    again, _ = load_score_module(tmp_path / "again.ckpt")
    assert torch.equal(again.network_denoiser()(x, t), before)
    assert torch.isfinite(before).all()


def test_denoise_check_writes_json(fitted):
    work, run = fitted
    proc = run_cli("test", "--config", TINY, "--ckpt_path", run / "checkpoints" / "last.ckpt", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = sorted((work / "runs" / "tiny").glob("version_*/denoise_check.json"))
    rows = json.loads(out[-1].read_text())
    assert [r["sigma"] for r in rows] == [0.1, 0.3, 1.0]
    for r in rows:
        assert r["mse_network"] > 0 and r["mse_gaussian"] > 0
        # on Gaussian data the analytic denoiser is optimal; a 4-step network cannot beat it by much
        assert r["mse_network"] > 0.9 * r["mse_gaussian"]
    assert "mse_network" in proc.stdout


def test_ddp_two_processes_give_the_same_surrogate(fitted, tmp_path):
    _, run = fitted
    proc = run_cli("fit", "--config", TINY, "--trainer.devices", "2", "--trainer.strategy", "ddp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, _ = load_score_module(run / "checkpoints" / "last.ckpt")
    two, _ = load_score_module(tmp_path / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt")
    assert torch.allclose(one.surrogate.spectrum, two.surrogate.spectrum, rtol=1e-12, atol=0)
    assert torch.allclose(one.surrogate.mean, two.surrogate.mean, rtol=1e-12, atol=1e-15)


def _restoration_metrics(run) -> dict[str, str]:
    (row,) = [r for r in csv.DictReader(open(run / "metrics.csv")) if r.get("restoration/sr2/ddrm/heuristic/psnr")]
    return {k: v for k, v in row.items() if k.startswith("restoration/") and k != "restoration/seconds"}


def test_validate_on_one_and_two_devices_logs_the_same_restoration(fitted, tmp_path, monkeypatch):
    """``validate`` of the fitted checkpoint with the restoration callback (5 images in chunks of 2, DDRM and DPS,
    heuristic and spectral) on 1 and 2 DDP processes: rank 0 restores images 0, 1, 4 and rank 1 images 2, 3 (no
    padding, none twice), and every logged number is equal as written (metrics.csv, 16 significant digits). Both runs
    use one thread per process (``OMP_NUM_THREADS=1``; Lightning otherwise gives each of 2 CPU processes half the
    cores): a float32 network's rounding depends on its thread count (3e-8 between 1 and 2 threads) as on its batch."""
    _, run = fitted
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    logged = []
    for devices in ("1", "2"):
        cwd = tmp_path / devices
        cwd.mkdir()
        args = ["validate", "--config", TINY, "--ckpt_path", run / "checkpoints" / "last.ckpt"]
        args += ["--trainer.devices", devices] + (["--trainer.strategy", "ddp"] if devices == "2" else [])
        proc = run_cli(*args, cwd=cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        logged.append(_restoration_metrics(cwd / "runs" / "tiny" / "version_0"))
    assert len(logged[0]) == 2 * 2 * 4 + 2  # sampler x source x (psnr, ssim, mse, fd) + a gain per sampler
    assert logged[0] == logged[1]


def fail_in_process(capsys, monkeypatch, cwd, *args) -> str:
    """Run a command that must fail in this process (as ``main`` runs it for ``python -m zsguide``; the command
    lines above run in subprocesses): its exit code 2 and its one ``error:`` line, with no traceback."""
    monkeypatch.chdir(cwd)
    rc = main([*map(str, args)])
    err = capsys.readouterr().err
    assert rc == 2, err[-2000:]
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "Traceback" not in err
    return line


def test_checkpoint_for_another_image_shape(fitted, capsys, monkeypatch):
    work, run = fitted
    ckpt = run / "checkpoints" / "last.ckpt"
    line = fail_in_process(
        capsys, monkeypatch, work, "test", "--config", TINY, "--ckpt_path", ckpt, "--data.image_size", 8
    )
    assert "(3, 16, 16)" in line and "(3, 8, 8)" in line


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["--data.name", "imagenet"], "unknown data set 'imagenet'"),
        (["--data.name", "folder", "--data.root", "no/such/dir"], "'no/such/dir' does not exist"),
        (["--data.name", "folder", "--data.root", "bad", "--data.split_policy", "all"], "cannot read image"),
    ],
)
def test_bad_input_gives_one_error_line_and_no_checkpoint(tmp_path, capsys, monkeypatch, extra, expected):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ok.png").write_bytes(b"")
    np.save(tmp_path / "bad" / "x.npy", np.zeros(3))
    (tmp_path / "bad" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert expected in fail_in_process(capsys, monkeypatch, tmp_path, "fit", "--config", TINY, *extra)
    assert not list(tmp_path.rglob("*.ckpt"))
