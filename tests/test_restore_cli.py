"""``python -m zsguide restore`` end to end: the files it writes, batch-size and device-count independence, a user's
own measurement, LPIPS from local weights, and bad input (one error line, exit status 2, no summary.json).

The reference run restores 3 test images of the tiny Gaussian checkpoint (x4 super-resolution, DDRM, 3 steps, the
analytic denoiser); the 2-device DDP run of the same job is a ``python -m zsguide restore`` subprocess (DDP inside
pytest fails). The other runs call ``zsguide.cli.main`` in-process, which is what the subprocess runs as well.
"""

import contextlib
import io
import json
import math
import shutil
import subprocess

import numpy as np
import pytest
import torch
import yaml
from skimage import io as skio
from skimage.metrics import peak_signal_noise_ratio

from zsguide.cli import main
from zsguide.commands.restore.options import parse
from zsguide.data import ImageDataModule
from zsguide.evaluation.metrics import image_metrics, load_lpips, lpips_per_image
from zsguide.operators import TASK_NAMES, make_operator
from zsguide.samplers import SAMPLERS, ParamSchedule, get_sampler
from zsguide.samplers.base import Sampler, ddim_from_estimate

from .cli_helpers import ROOT, TINY, run_cli

pytestmark = pytest.mark.slow

N = 3  # images: uneven over 2 devices
RUN = (
    "--task",
    "sr4",
    "--sampler",
    "ddrm",
    "--steps",
    "3",
    "--num_images",
    str(N),
    "--denoiser",
    "analytic",
    "--sigma_y",
    "0.02",
    "--seed",
    "5",
)
QUIET = ("--trainer.enable_progress_bar", "false")
SUMMARY_KEYS = {
    "sampler",
    "task",
    "task_params",
    "steps",
    "params_source",
    "sigma_y",
    "noise_convention",
    "seed",
    "num_images",
    "denoiser",
    "psnr_mean",
    "ssim_mean",
    "mse_mean",
    "psnr_se",
    "ssim_se",
    "mse_se",
    "wall_time_s",
    "images_per_second",
    "devices",
    "clipped",
}
RUN_ENVIRONMENT = ("wall_time_s", "images_per_second", "devices", "strategy")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    work = tmp_path_factory.mktemp("fit")
    proc = run_cli("fit", "--config", TINY, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def reference(ckpt, tmp_path_factory):
    """One device, all 3 images in one batch, progress bar on (in-process: the DDP test runs the subprocess)."""
    out = tmp_path_factory.mktemp("restore") / "ref"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["restore", "--ckpt_path", str(ckpt), *RUN, "--batch_size", "3", "--output", str(out)])
    assert rc == 0, stderr.getvalue()[-3000:]
    return out, subprocess.CompletedProcess([], rc, stdout.getvalue(), stderr.getvalue())


def restore_in_process(capsys, *args):
    rc = main(["restore", *map(str, args)])
    captured = capsys.readouterr()
    return rc, captured


def read_csv(path):
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    return header, [dict(zip(header, map(float, ln.split(",")))) for ln in lines[1:]]


def npy(out, sub, index):
    return np.load(out / sub / f"{index:05d}.npy")


def comparable(summary):
    return {k: v for k, v in summary.items() if k not in RUN_ENVIRONMENT and k != "checkpoint"}


def handmade_checkpoint(path, image_size):
    """A checkpoint without training (untrained network, surrogate fitted on 16 Gaussian images): for shapes the
    tiny fit does not have."""
    from zsguide.diffusion.module import ScoreModule

    dm = ImageDataModule(name="gaussian", image_size=image_size, n_train=16, n_val=4, n_test=4)
    module = ScoreModule(
        channels=3, image_size=image_size, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=()
    )
    module.fit_surrogate(dm.dataset("train"))
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "datamodule_hyper_parameters": dict(dm.hparams),
    }
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return path


# ---------------------------------------------------------------------------------------------------- end to end


def test_restore_writes_every_file_with_the_right_contents(reference):
    out, proc = reference
    names = [f"{i:05d}" for i in range(N)]
    for sub in ("restored", "measurement", "truth"):
        want = sorted(f"{n}.{e}" for n in names for e in ("npy", "png"))
        assert sorted(p.name for p in (out / sub).iterdir()) == want
    assert not (out / "parts").exists()
    # measurement at its own shape (x4: 4x4), PNGs are the clipped arrays in 8 bits
    for i in range(N):
        assert npy(out, "measurement", i).shape == (3, 4, 4) and npy(out, "restored", i).shape == (3, 16, 16)
        png = skio.imread(out / "measurement" / f"{i:05d}.png")
        assert png.shape == (4, 4, 3)
        want = np.floor(np.clip(npy(out, "restored", i), 0, 1).transpose(1, 2, 0) * 255 + 0.5)
        assert np.abs(skio.imread(out / "restored" / f"{i:05d}.png").astype(float) - want).max() <= 1
    # the measurement is A(truth) + noise of std sigma_y (pixel units): check A(truth) up to the noise
    op = make_operator("sr4", (3, 16, 16), 5, [0]).to(dtype=torch.float64)
    resid = npy(out, "measurement", 0) - op.A(torch.from_numpy(npy(out, "truth", 0)).double()[None])[0].numpy()
    assert 0.01 < resid.std() < 0.03  # sigma_y = 0.02
    # truth is the test split of the checkpoint's data
    test = ImageDataModule(name="gaussian", image_size=16, n_train=64, n_val=8, n_test=16).dataset("test")
    for i in range(N):
        assert np.array_equal(npy(out, "truth", i), test[i]["image"].numpy())

    header, rows = read_csv(out / "metrics.csv")
    assert header == ["index", "psnr", "ssim", "mse", "mse_unclipped"] and [int(r["index"]) for r in rows] == list(
        range(N)
    )
    for r in rows:  # Gaussian fields are never clipped: metrics on raw values, against an independent computation
        x, x_hat = npy(out, "truth", int(r["index"])).astype(np.float64), npy(out, "restored", int(r["index"]))
        assert r["psnr"] == pytest.approx(
            peak_signal_noise_ratio(x, x_hat.astype(np.float64), data_range=1.0), abs=1e-4
        )
        assert r["mse"] == pytest.approx(np.mean((x_hat.astype(np.float64) - x) ** 2), rel=1e-9)
        assert r["mse_unclipped"] == r["mse"]  # unclipped data: the two are one
        assert -1 < r["ssim"] < 1

    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["complete"] and summary["clipped"] is False and summary["num_images"] == N
    assert (summary["sampler"], summary["task"], summary["steps"], summary["seed"]) == ("ddrm", "sr4", 3, 5)
    assert (summary["sigma_y"], summary["noise_convention"], summary["sigma_network"]) == (0.02, "pixel", 0.04)
    assert summary["params_source"] == "heuristic" and summary["denoiser"] == "analytic"
    assert summary["task_params"]["kernel"] == "block" and summary["devices"] == 1
    # counted per image (samplers/cost.py): DDRM's 3 steps call the network 3 times; V^T, U^T and V at the start,
    # then V^T x0, V^T eps, U^T y, V^T z and V per step, without z at the last
    assert summary["cost_per_image"] == {"network_calls": 3, "vjps": 0, "operator_applications": 3 + 5 + 5 + 4}
    for m in ("psnr", "ssim", "mse"):
        vals = [r[m] for r in rows]
        assert summary[f"{m}_mean"] == pytest.approx(np.mean(vals), rel=1e-12)
        assert summary[f"{m}_se"] == pytest.approx(np.std(vals, ddof=1) / math.sqrt(N), rel=1e-9)
    assert summary["wall_time_s"] > 0 and summary["images_per_second"] > 0
    assert "LPIPS skipped" in summary["lpips"]

    params = ParamSchedule.load(out / "params.json")
    assert params.method == "ddrm" and params.steps == 3 and params.provenance["source"] == "heuristic"
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["task"] == "sr4" and config["steps"] == 3 and config["data"]["name"] == "gaussian"
    # grid: 3 rows of truth | measurement | restoration, 16-pixel tiles with 2-pixel padding
    assert skio.imread(out / "grid.png").shape[:2] == (3 * 18 + 2, 3 * 18 + 2)
    assert "psnr" in proc.stdout and "restoring: images" in proc.stderr  # the summary and the progress bar


def test_batch_size_and_config_round_trip(reference, tmp_path, capsys):
    """--config DIR/config.yaml repeats the run; with batch size 1 instead of 3 every output is identical."""
    ref, _ = reference
    rc, cap = restore_in_process(
        capsys, "--config", ref / "config.yaml", "--batch_size", "1", "--output", tmp_path / "b1", *QUIET
    )
    assert rc == 0, cap.err[-2000:]
    out = tmp_path / "b1"
    assert (out / "metrics.csv").read_text() == (ref / "metrics.csv").read_text()
    for i in range(N):
        for sub in ("restored", "measurement"):
            assert np.array_equal(npy(out, sub, i), npy(ref, sub, i))
            assert (out / sub / f"{i:05d}.png").read_bytes() == (ref / sub / f"{i:05d}.png").read_bytes()
    assert comparable(json.loads((out / "summary.json").read_text())) == comparable(
        json.loads((ref / "summary.json").read_text())
    )


DDP = ("--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu")


def restore_on_two_ddp_devices(cwd, *args) -> subprocess.CompletedProcess:
    """``restore`` on 2 DDP processes (a subprocess: DDP cannot start inside pytest on the CPU); it must succeed."""
    proc = run_cli("restore", *args, *DDP, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def assert_same_files(out, ref, subs) -> None:
    """The same file names in each of ``subs``, with the same bytes."""
    for sub in subs:
        assert sorted(p.name for p in (out / sub).iterdir()) == sorted(p.name for p in (ref / sub).iterdir())
        for p in (ref / sub).iterdir():
            assert (out / sub / p.name).read_bytes() == p.read_bytes(), p


def test_two_ddp_devices_give_the_same_outputs_as_one(ckpt, reference, tmp_path):
    ref, _ = reference
    proc = restore_on_two_ddp_devices(
        tmp_path, "--ckpt_path", ckpt, *RUN, "--batch_size", "3", "--output", "ddp", *QUIET
    )
    out = tmp_path / "ddp"
    assert (out / "metrics.csv").read_text() == (ref / "metrics.csv").read_text()  # 3 rows: none twice, none lost
    assert_same_files(out, ref, ("restored", "measurement", "truth"))
    two, one = (json.loads((d / "summary.json").read_text()) for d in (out, ref))
    assert two["devices"] == 2 and comparable(two) == comparable(one)
    assert proc.stdout.count("wrote ") == 1  # rank 0 alone reports
    # the grid is drawn from the images kept in memory, rank 1's gathered to rank 0: the same bytes
    assert (out / "grid.png").read_bytes() == (ref / "grid.png").read_bytes()


def test_two_ddp_devices_give_the_same_samples_and_grid_with_a_user_measurement(ckpt, reference, tmp_path, capsys):
    """--input with 3 samples on 2 DDP devices (rank 0 keeps the measurement, rank 1 sample 1): the same files and
    grid.png bytes as on one device."""
    ref, _ = reference
    mine = ("--input", ref / "measurement" / "00000.npy", "--num_samples", "3", "--batch_size", "1", *QUIET)
    rc, cap = restore_in_process(capsys, "--ckpt_path", ckpt, *RUN, *mine, "--output", tmp_path / "one")
    assert rc == 0, cap.err[-2000:]
    restore_on_two_ddp_devices(tmp_path, "--ckpt_path", ckpt, *RUN, *mine, "--output", "two")
    one, two = tmp_path / "one", tmp_path / "two"
    assert_same_files(two, one, ("restored", "measurement"))
    assert (two / "grid.png").read_bytes() == (one / "grid.png").read_bytes()
    assert skio.imread(two / "grid.png").shape[:2] == (18 + 2, 4 * 18 + 2)  # measurement | 3 samples


def test_the_writer_keeps_only_the_grid_images(tmp_path):
    """Of 20 expected indices only the first GRID_ROWS (sorted) are kept, each in storage of its own (not a view
    that would hold, or send, its whole batch), with the values its .npy file gets."""
    from types import SimpleNamespace

    from zsguide.commands.restore import outputs
    from zsguide.commands.restore.writer import RestoreWriter

    expected = list(range(19, -1, -1))
    plan = SimpleNamespace(output=tmp_path, expected_indices=expected, has_truth=True, mode="dataset")
    writer = RestoreWriter(plan, {}, ())
    batch = {k: torch.rand(20, 3, 4, 4, dtype=torch.float64) for k in ("truth", "measurement", "restored")}
    for j in range(20):
        writer._keep_for_grid(j, batch, j)
    assert outputs.grid_indices(expected) == list(range(outputs.GRID_ROWS))
    assert sorted(writer._kept) == list(range(outputs.GRID_ROWS))
    for i, cells in writer._kept.items():
        for cell, sub in zip(cells, ("truth", "measurement", "restored")):
            assert cell.dtype == torch.float32 and torch.equal(cell, batch[sub][i].float())
            assert cell.untyped_storage().nbytes() == cell.numel() * 4


def test_user_measurement_gives_samples_without_metrics(reference, tmp_path, capsys):
    """The reference's measurement of image 0 as --input: sample 0 (index 0) is the reference restoration of image 0
    up to float32 rounding of the measurement; sample 1 is another draw."""
    ref, _ = reference
    config = yaml.safe_load((ref / "config.yaml").read_text())
    rc, cap = restore_in_process(
        capsys,
        "--ckpt_path",
        config["ckpt_path"],
        *RUN,
        "--input",
        ref / "measurement" / "00000.npy",
        "--num_samples",
        "2",
        "--output",
        tmp_path / "mine",
        *QUIET,
    )
    assert rc == 0, cap.err[-2000:]
    out = tmp_path / "mine"
    assert sorted(p.name for p in (out / "restored").iterdir()) == ["00000.npy", "00000.png", "00001.npy", "00001.png"]
    assert np.allclose(npy(out, "restored", 0), npy(ref, "restored", 0), atol=1e-5)
    assert np.abs(npy(out, "restored", 1) - npy(out, "restored", 0)).max() > 1e-2
    assert np.allclose(np.load(out / "measurement" / "input.npy"), npy(ref, "measurement", 0), atol=1e-6)
    assert not (out / "metrics.csv").exists() and not (out / "truth").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ground_truth"] is False and summary["metrics"] is None and "psnr_mean" not in summary
    assert summary["num_samples"] == 2 and "no metrics" in summary["metrics_note"]
    # a PNG low-resolution image is accepted too (8-bit rounded)
    rc, cap = restore_in_process(
        capsys,
        "--ckpt_path",
        config["ckpt_path"],
        *RUN,
        "--input",
        ref / "measurement" / "00000.png",
        "--output",
        tmp_path / "png",
        *QUIET,
    )
    assert rc == 0, cap.err[-2000:]
    assert np.abs(npy(tmp_path / "png", "restored", 0) - npy(ref, "restored", 0)).max() < 0.1


# ---------------------------------------------------------------------------------------------------- metrics


def test_image_metrics_clip_and_batch_independence():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16, generator=g)
    x_hat = x + 0.2 * torch.randn(4, 3, 16, 16, generator=g)  # leaves [0, 1]
    clipped, raw = image_metrics(x_hat, x, clip=True), image_metrics(x_hat, x, clip=False)
    for j in range(4):
        a, b = x[j].double().numpy(), x_hat[j].double().numpy()
        # torchmetrics' PSNR carries a float32 factor 10 / ln 10: agreement to ~1e-6 dB, not 1e-12
        assert float(clipped["psnr"][j]) == pytest.approx(
            peak_signal_noise_ratio(a, np.clip(b, 0, 1), data_range=1), abs=1e-5
        )
        assert float(raw["mse"][j]) == pytest.approx(np.mean((a - b) ** 2), rel=1e-12)
        one = image_metrics(x_hat[j : j + 1], x[j : j + 1])
        assert all(torch.equal(one[k][0], clipped[k][j]) for k in one)
    assert (clipped["mse"] < raw["mse"]).all()
    assert torch.allclose(image_metrics(x, x)["ssim"], torch.ones(4, dtype=torch.float64))


def test_lpips_from_local_weights(tmp_path, capsys, monkeypatch):
    """LPIPS with an AlexNet state_dict given locally (random weights: only the wiring is tested)."""
    import torchvision

    state = torchvision.models.alexnet(weights=None).state_dict()
    torch.save(state, tmp_path / "alexnet.pth")
    net = load_lpips(tmp_path / "alexnet.pth")
    assert torch.equal(net.net.slice1[0].weight, state["features.0.weight"])
    assert torch.equal(dict(net.net.slice5.named_children())["10"].weight, state["features.10.weight"])
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(lpips_per_image(net, x, x), torch.zeros(2, dtype=torch.float64), atol=1e-7)
    assert (lpips_per_image(net, x.flip(-1), x) > 0).all()
    # end to end on 32x32 images (AlexNet's minimum), weights found through the environment variable
    ck = handmade_checkpoint(tmp_path / "c32.ckpt", 32)
    monkeypatch.setenv("ZSGUIDE_LPIPS_WEIGHTS", str(tmp_path / "alexnet.pth"))
    rc, cap = restore_in_process(
        capsys,
        "--ckpt_path",
        ck,
        "--task",
        "deblur_gaussian",
        "--sampler",
        "ddrm",
        "--steps",
        "2",
        "--num_images",
        "2",
        "--denoiser",
        "analytic",
        "--output",
        tmp_path / "out",
        *QUIET,
    )
    assert rc == 0, cap.err[-2000:]
    header, rows = read_csv(tmp_path / "out" / "metrics.csv")
    assert header == ["index", "psnr", "ssim", "mse", "mse_unclipped", "lpips"] and all(r["lpips"] > 0 for r in rows)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["lpips"] == "computed" and summary["lpips_mean"] == pytest.approx(
        np.mean([r["lpips"] for r in rows])
    )


def test_restore_presets_are_valid():
    presets = sorted((ROOT / "configs" / "restore").glob("*.yaml"))
    assert "default.yaml" in [p.name for p in presets] and len(presets) >= 4
    for path in presets:
        cfg = parse(["--config", str(path)])
        assert cfg.task in TASK_NAMES and cfg.sampler in SAMPLERS, path
        assert cfg.ckpt_path == "checkpoints/patches32.ckpt" and cfg.steps >= 1 and cfg.sigma_y >= 0, path
        make_operator(cfg.task, (3, 32, 32), cfg.seed, [0, 1], **cfg.task_params)  # parameters are valid
        assert "Sources" in path.read_text() or path.name == "default.yaml"


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    return handmade_checkpoint(tmp_path_factory.mktemp("c10") / "c10.ckpt", 10)


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["--task", "inpaint_mask", "--task_params.path", "{tmp}/mask8.npy"], ["mask8.npy", "(8, 8)"]),
        (["--task", "sr4", "--ckpt_path", "{small}"], ["factor 4 does not divide", "10x10"]),
        (["--sigma_y", "-0.1"], ["--sigma_y", "-0.1"]),
        (["--task", "denoise"], ["unknown task 'denoise'"]),
        (["--sampler", "ddpm"], ["unknown sampler 'ddpm'"]),
        (["--data.image_size", "8"], ["(3, 16, 16)", "(3, 8, 8)"]),
        (["--ckpt_path", "{tmp}/nope.ckpt"], ["nope.ckpt", "does not exist"]),
        (["--input", "{tmp}/nope.png"], ["nope.png", "does not exist"]),
        (["--input", "{tmp}/big.npy"], ["big.npy", "16x16", "4x4"]),
        (["--num_images", "17"], ["--num_images 17", "16 images"]),
        (["--steps", "x"], ["--steps", "'x'"]),
        (["--lpips_weights", "{tmp}/none.pth"], ["none.pth"]),
        (["--trust_factor", "2"], ["--trust_factor", "--params spectral", "'heuristic'"]),
        (["--params", "spectral", "--trust_factor", "0.5"], ["--trust_factor", "> 1", "0.5"]),
        (["--params", "spectral", "--trust_factor", "tight"], ["--trust_factor", "'none'", "'tight'"]),
        (["--pareto_guard", "true"], ["--pareto_guard", "--params spectral", "'heuristic'"]),
        (["--objective", "mse"], ["--objective", "--params spectral", "'heuristic'"]),
        (["--params", "spectral", "--objective", "psnr"], ["--objective", "w2, mse, perception, pareto", "'psnr'"]),
        (["--trust_factor", "0"], ["--trust_factor 0.0", "--params spectral"]),
        (["--trainer.accelerator", "abacus"], ["invalid --trainer options", "abacus"]),
    ],
)
def test_bad_input_gives_one_error_line_and_no_summary(ckpt, small_ckpt, tmp_path, capsys, extra, expected):
    np.save(tmp_path / "mask8.npy", np.ones((8, 8)))
    np.save(tmp_path / "big.npy", np.zeros((3, 16, 16)))
    extra = [e.format(tmp=tmp_path, small=small_ckpt) for e in extra]
    rc, cap = restore_in_process(capsys, "--ckpt_path", ckpt, *RUN, "--output", tmp_path / "out", *QUIET, *extra)
    assert rc == 2
    (line,) = [ln for ln in cap.err.splitlines() if ln.startswith("error:")]
    for text in expected:
        assert text in line, line
    assert "Traceback" not in cap.err
    assert not (tmp_path / "out").exists()  # checked before anything is written


class NaNAtIndexOne(Sampler):
    """DDIM on the denoiser's estimate, except that image index 1 turns NaN at step 1."""

    name = "nan_at_1"
    knobs = ("eta",)

    def heuristic_values(self, task, steps):
        return {"eta": 0.0}

    def run(self, *args, **kwargs):
        self._indices = list(kwargs["indices"])
        return super().run(*args, **kwargs)

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        x0 = denoiser(x, t)
        if i == 1:
            bad = torch.tensor([k == 1 for k in self._indices]).view(-1, 1, 1, 1)
            x0 = torch.where(bad, torch.full_like(x0, float("nan")), x0)
        return ddim_from_estimate(x, x0, a_t, a_prev, 0.0, lambda: noise("z")), x0


def test_nan_in_the_sampler_stops_with_one_line_and_unmarks_an_old_run(ckpt, reference, tmp_path, capsys, monkeypatch):
    """A run into a directory holding a complete earlier run fails half-way: the old summary.json and metrics.csv
    are gone (the directory is not presented as complete), and the error is one line."""
    ref, _ = reference
    out = tmp_path / "again"
    shutil.copytree(ref, out)
    monkeypatch.setitem(SAMPLERS, "nan_at_1", NaNAtIndexOne())
    rc, cap = restore_in_process(
        capsys, "--ckpt_path", ckpt, *RUN, "--sampler", "nan_at_1", "--batch_size", "1", "--output", out, *QUIET
    )
    assert rc == 2
    (line,) = [ln for ln in cap.err.splitlines() if ln.startswith("error:")]
    assert "NaN/Inf" in line and "image index 1" in line and "Traceback" not in cap.err
    assert not (out / "summary.json").exists() and not (out / "metrics.csv").exists()
    assert (out / "restored" / "00000.npy").exists() and not (out / "restored" / "00001.npy").exists()


def test_spectral_params_are_designed_on_the_surrogate(ckpt, tmp_path, capsys):
    """--params spectral on a blur task: params.json carries the design's provenance and its closed-form prediction
    (designed avg W2 below the heuristic's), and the run completes with the designed (non-constant) schedule."""
    rc, cap = restore_in_process(
        capsys,
        "--ckpt_path",
        ckpt,
        "--task",
        "deblur_gaussian",
        "--task_params.size",
        "5",
        "--task_params.sigma",
        "1.0",
        "--sampler",
        "diffpir",
        "--steps",
        "6",
        "--num_images",
        "2",
        "--denoiser",
        "analytic",
        "--params",
        "spectral",
        "--output",
        tmp_path / "s",
        *QUIET,
    )
    assert rc == 0, cap.err[-2000:]
    params = json.loads((tmp_path / "s" / "params.json").read_text())
    prov = params["provenance"]
    assert prov["source"] == "spectral" and prov["surrogate_digest"]
    assert prov["predicted_designed"]["avg_w2"] < prov["predicted_heuristic"]["avg_w2"]
    assert max(params["values"]["zeta"]) - min(params["values"]["zeta"]) > 1e-6
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["params_source"] == "spectral"


def test_analyze_and_tune(ckpt, tmp_path, capsys):
    """analyze writes the analysis.json schema with the references and heuristic/spectral criteria per sampler
    (designed never worse, the oracle exact); tune writes a params.json that restore runs with."""
    blur = ("--task", "deblur_gaussian", "--task_params.size", "5", "--task_params.sigma", "1.0")
    rc = main(
        [
            "analyze",
            "--ckpt_path",
            str(ckpt),
            *blur,
            "--steps",
            "6",
            "--sigma_y",
            "0.05",
            "--samplers",
            "[ddrm, diffpir, oracle]",
            "--output",
            str(tmp_path / "an"),
        ]
    )
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    a = json.loads((tmp_path / "an" / "analysis.json").read_text())
    assert {a["task"], a["steps"], a["sigma_y"]} == {"deblur_gaussian", 6, 0.05}
    ref = a["references"]
    assert ref["posterior_sampler_mse"] == pytest.approx(2 * ref["mmse"]) and ref["mmse"] > 0
    for name, e in a["samplers"].items():
        assert set(e) == {"heuristic", "spectral"} and set(e["heuristic"]) == {
            "avg_w2",
            "mse",
            "perception_w2",
            "w2_mean",
            "w2_cov",
        }
        assert e["spectral"]["avg_w2"] <= e["heuristic"]["avg_w2"]
    assert a["samplers"]["oracle"]["heuristic"]["avg_w2"] < 1e-12
    assert a["samplers"]["oracle"]["heuristic"]["mse"] == pytest.approx(ref["posterior_sampler_mse"], rel=1e-9)
    assert a["samplers"]["diffpir"]["spectral"]["avg_w2"] < a["samplers"]["diffpir"]["heuristic"]["avg_w2"]
    assert a["trust_factor"] == 2.0  # the default trust region
    # RED-diff with Adam has no law: listed with the reason, and refused by name with it (one line)
    assert a["not_analysed"] == {"reddiff": get_sampler("reddiff").no_law_reason}
    assert "reddiff     not analysed: no closed form (Adam's per-pixel step scaling is not linear" in cap.out
    rc = main(["analyze", "--ckpt_path", str(ckpt), "--samplers", "[reddiff]", "--output", str(tmp_path / "an2")])
    assert rc == 2 and "error: sampler reddiff has no closed form: Adam's" in capsys.readouterr().err
    for fig in ("transfer_functions.png", "designed_schedules.png"):
        assert (tmp_path / "an" / fig).stat().st_size > 1000
    tune = ["tune", "--ckpt_path", str(ckpt), *blur, "--steps", "6", "--sigma_y", "0.05", "--sampler", "diffpir"]
    rc = main([*tune, "--output", str(tmp_path / "p.json")])
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert json.loads((tmp_path / "p.json").read_text())["provenance"]["trust_factor"] == 2.0
    rc = main([*tune, "--trust_factor", "none", "--output", str(tmp_path / "free.json")])
    assert rc == 0, capsys.readouterr().err[-2000:]
    free = json.loads((tmp_path / "free.json").read_text())["provenance"]
    assert free["trust_factor"] is None  # unconstrained: the surrogate's optimum, no worse than the trust region's
    trusted = json.loads((tmp_path / "p.json").read_text())["provenance"]  # the same units (network) as free's
    assert free["predicted_designed"]["avg_w2"] <= trusted["predicted_designed"]["avg_w2"] * (1 + 1e-9)
    rc = main(["tune", "--ckpt_path", str(ckpt), *blur, "--trust_factor", "1", "--output", str(tmp_path / "bad.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "--trust_factor must be a number > 1" in err and "got 1.0" in err and "Traceback" not in err
    assert not (tmp_path / "bad.json").exists()
    rc, cap = restore_in_process(
        capsys,
        "--ckpt_path",
        ckpt,
        *blur,
        "--sampler",
        "diffpir",
        "--num_images",
        "2",
        "--sigma_y",
        "0.05",
        "--denoiser",
        "analytic",
        "--params",
        tmp_path / "p.json",
        "--output",
        tmp_path / "r",
        *QUIET,
    )
    assert rc == 0, cap.err[-2000:]
    assert json.loads((tmp_path / "r" / "params.json").read_text())["provenance"]["source"] == "spectral"
    # inside a trust region (every knob within a factor 1.5 of the heuristic) with the Pareto guard, recorded in the
    # params' provenance
    rc, cap = restore_in_process(
        capsys,
        "--ckpt_path",
        ckpt,
        *blur,
        "--sampler",
        "ddrm",
        "--num_images",
        "2",
        "--sigma_y",
        "0.05",
        "--denoiser",
        "analytic",
        "--steps",
        "6",
        "--params",
        "spectral",
        "--trust_factor",
        "1.5",
        "--pareto_guard",
        "true",
        "--output",
        tmp_path / "rt",
        *QUIET,
    )
    assert rc == 0, cap.err[-2000:]
    prov = json.loads((tmp_path / "rt" / "params.json").read_text())["provenance"]
    assert prov["trust_factor"] == 1.5 and prov["pareto_guard"] is True and prov["source"] == "spectral"
    saved = yaml.safe_load((tmp_path / "rt" / "config.yaml").read_text())
    assert saved["trust_factor"] == 1.5 and saved["pareto_guard"] is True  # as given, so --config repeats the run
    pred, heur = prov["predicted_designed"], prov["predicted_heuristic"]
    assert pred["mse"] <= heur["mse"] * (1 + 1e-3) and pred["perception_w2"] <= heur["perception_w2"] * (1 + 1e-3)
    for task in ("sr2", "inpaint_random"):  # block and dense structures: the oracle is exact, DPS is designed
        rc = main(
            [
                "analyze",
                "--ckpt_path",
                str(ckpt),
                "--task",
                task,
                "--steps",
                "4",
                "--samplers",
                "[dps, oracle]",
                "--output",
                str(tmp_path / task),
            ]
        )
        assert rc == 0, capsys.readouterr().err[-2000:]
        a = json.loads((tmp_path / task / "analysis.json").read_text())
        assert a["samplers"]["oracle"]["heuristic"]["avg_w2"] < 1e-9
        assert a["samplers"]["dps"]["spectral"]["avg_w2"] <= a["samplers"]["dps"]["heuristic"]["avg_w2"]
