"""The Python API (zsguide/api.py) against the command lines it underlies, on the shipped prior.

- restore: the API's restorations equal ``python -m zsguide restore``'s ``restored/*.npy`` bit for bit for the same
  seed and indices (heuristic and spectral parameters, a sampler that differentiates through the denoiser, the
  network and the analytic denoiser, a user's measurement with several samples), and its measurement equals the
  command's ``measurement/*.npy``;
- design equals tune's params.json, predict equals analyze's analysis.json;
- the module docstring's example runs (doctest), in pixel units with the command line's defaults.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import zsguide
import zsguide.api
from zsguide.cli import main
from zsguide.errors import ZSGuideError
from zsguide.samplers import get_sampler

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "checkpoints" / "patches32.ckpt"
N = 3


def run(*argv: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    assert rc == 0, err.getvalue()[-3000:]


@pytest.fixture(scope="module")
def prior():
    return zsguide.load_prior(CKPT)


def cli_restore(out: Path, task: str, sampler: str, *extra: str) -> None:
    run(
        "restore", "--ckpt_path", CKPT, "--task", task, "--sampler", sampler, "--num_images", N, "--batch_size", N,
        "--sigma_y", 0.02, "--seed", 3, "--trainer.enable_progress_bar", "false", "--output", out, *extra,
    )  # fmt: skip


def saved(out: Path, sub: str, n: int = N) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.load(out / sub / f"{i:05d}.npy") for i in range(n)]))


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, sampler, params, denoiser, steps",
    [
        ("sr4", "ddrm", "heuristic", "network", 20),
        ("inpaint_random", "dps", "heuristic", "network", 8),
        ("deblur_gaussian", "pigdm", "spectral", "analytic", 10),
    ],
)
def test_api_restorations_equal_the_command_lines_bit_for_bit(prior, tmp_path, task, sampler, params, denoiser, steps):
    out = tmp_path / "cli"
    cli_restore(out, task, sampler, "--params", params, "--denoiser", denoiser, "--steps", steps)
    images, indices = prior.test_images(N)
    assert torch.equal(images, saved(out, "truth"))
    m = zsguide.measure(images, task, sigma_y=0.02, seed=3, indices=indices)
    assert torch.equal(m.y.float(), saved(out, "measurement"))
    r = zsguide.restore(prior, m, sampler, steps=steps, params=params, denoiser=denoiser)
    assert torch.equal(r.images, saved(out, "restored"))
    assert r.params.to_dict() == json.loads((out / "params.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("task, sampler, task_params", [("sr2", "ddnm", {}), ("inpaint_random", "ddrm", {"keep": 0.3})])
def test_api_samples_of_a_users_measurement_equal_restore_input(prior, tmp_path, task, sampler, task_params):
    """``restore --input`` against :meth:`Measurement.from_pixels`, with a fixed operator and with one drawn from
    (seed, index 0) with task parameters."""
    images, _ = prior.test_images(1)
    m = zsguide.measure(images, task, sigma_y=0.01, seed=2, **task_params)
    path = tmp_path / "y.npy"
    np.save(path, m.y[0].numpy())
    out = tmp_path / "cli"
    run(
        "restore", "--ckpt_path", CKPT, "--task", task, "--task_params", json.dumps(task_params), "--sampler", sampler,
        "--sigma_y", 0.01, "--seed", 2, "--input", path, "--num_samples", 2, "--steps", 10,
        "--trainer.enable_progress_bar", "false", "--output", out,
    )  # fmt: skip
    mine = zsguide.Measurement.from_pixels(m.y[0], task, prior.image_shape, sigma_y=0.01, seed=2, **task_params)
    r = zsguide.restore(prior, mine, sampler, steps=10, indices=[0, 1])
    assert torch.equal(r.images, saved(out, "restored", 2))


def test_design_equals_tune_and_predict_equals_analyze(prior, tmp_path):
    args = ["--ckpt_path", CKPT, "--task", "deblur_gaussian", "--steps", 6, "--sigma_y", 0.02]
    run("tune", *args, "--sampler", "ddrm", "--output", tmp_path / "params.json")
    run("analyze", *args, "--samplers", "[ddrm]", "--output", tmp_path / "analyze")
    tuned = json.loads((tmp_path / "params.json").read_text())
    designed = zsguide.design(prior, "deblur_gaussian", "ddrm", steps=6, sigma_y=0.02)
    assert json.loads(json.dumps(designed.to_dict())) == tuned
    analysis = json.loads((tmp_path / "analyze" / "analysis.json").read_text())
    for label, params in (("heuristic", "heuristic"), ("spectral", designed)):
        p = zsguide.predict(prior, "deblur_gaussian", get_sampler("ddrm"), steps=6, sigma_y=0.02, params=params)
        for k, v in analysis["samplers"]["ddrm"][label].items():
            assert p[k] == pytest.approx(v, rel=1e-12), (label, k)
        assert p["w2_mean"] + p["w2_cov"] == pytest.approx(p["avg_w2"], rel=1e-9)
    for k, v in analysis["references"].items():
        assert p[k] == pytest.approx(v, rel=1e-12)


def test_noise_conventions_and_bad_input(prior):
    images, indices = prior.test_images(2)
    pix = zsguide.measure(images, "deblur_gaussian", sigma_y=0.02, indices=indices)
    net = zsguide.measure(images, "deblur_gaussian", sigma_y=0.04, indices=indices, noise_convention="network")
    assert pix.sigma_network == net.sigma_network == pytest.approx(0.04)
    assert torch.equal(pix.y_network, net.y_network)
    bad = [
        (lambda: zsguide.measure(images, "deblur_gaussian", sigma_y=0.02, noise_convention="volts"), "noise_convention"),
        (lambda: zsguide.measure(images, "deblur_gaussian", sigma_y=-0.1), "sigma_y must be a finite number >= 0"),
        (lambda: zsguide.design(prior, "deblur_gaussian", "ddrm", sigma_y=-0.1), "sigma_y"),
        (lambda: zsguide.restore(prior, pix, "nope"), "unknown sampler"),
        (lambda: zsguide.design(prior, "deblur_gaussian", "ddrm", trust_factor=0.5), "trust_factor must be"),
        (lambda: zsguide.design(prior, "deblur_gaussian", "ddrm", trust=2), "unknown design option"),
        (lambda: zsguide.restore(prior, pix, "ddrm", params="spectral", design={"objective": "psnr"}),
         "objective must be one of"),
        (lambda: zsguide.restore(prior, zsguide.measure(images[:, :, :16, :16], "sr2", 0.01), "ddrm"),
         "was made for (3, 32, 32)"),
        # a schedule of another task, or of other steps, is refused as restore refuses such a params.json
        (lambda: zsguide.restore(prior, pix, "ddrm", params=zsguide.heuristic(prior, "sr4", "ddrm")),
         "is for task 'sr4', not 'deblur_gaussian'"),
        (lambda: zsguide.restore(prior, pix, "ddrm", steps=5, params=zsguide.heuristic(prior, "deblur_gaussian", "ddrm")),
         "has 20 steps, but steps is 5"),
        (lambda: zsguide.predict(prior, "deblur_gaussian", "dps", params=zsguide.heuristic(prior, "deblur_gaussian", "ddrm")),
         "is for sampler 'ddrm', not 'dps'"),
    ]  # fmt: skip
    for call, message in bad:
        with pytest.raises(ZSGuideError, match=re.escape(message)):
            call()


def test_design_options_as_keywords_a_mapping_or_an_object_are_the_same(prior):
    images, indices = prior.test_images(1)
    m = zsguide.measure(images, "deblur_gaussian", sigma_y=0.02, indices=indices)
    runs = [
        zsguide.restore(prior, m, "ddrm", steps=4, params="spectral", denoiser="analytic", design=design)
        for design in ({"trust_factor": 3.0}, zsguide.DesignOptions(trust_factor=3.0))
    ]
    designed = zsguide.design(prior, "deblur_gaussian", "ddrm", steps=4, sigma_y=0.02, trust_factor=3.0)
    assert runs[0].params.values == runs[1].params.values == designed.values
    assert torch.equal(runs[0].images, runs[1].images)


@pytest.mark.slow
def test_gradient_samplers_run_inside_inference_mode_and_in_float64(prior):
    """DPS differentiates through the denoiser: inside ``torch.inference_mode()`` (a notebook habit) the API still
    gives the same restoration; a prior cast to float64 restores in float64, within float32 rounding of float32."""
    images, indices = prior.test_images(2)
    m = zsguide.measure(images, "inpaint_random", sigma_y=0.02, indices=indices)
    plain = zsguide.restore(prior, m, "dps", steps=4)
    with torch.inference_mode():
        inside = zsguide.restore(
            prior, zsguide.measure(images, "inpaint_random", sigma_y=0.02, indices=indices), "dps", steps=4
        )
    assert torch.equal(plain.images, inside.images)
    wide = zsguide.load_prior(CKPT).to(dtype=torch.float64)
    double = zsguide.restore(wide, m, "dps", steps=4)
    assert double.images.dtype == torch.float64
    assert torch.allclose(double.images, plain.images.double(), atol=1e-3)  # float32 rounding through 4 steps


@pytest.mark.slow
def test_the_docstring_examples_run():
    with contextlib.chdir(ROOT):
        result = doctest.testmod(zsguide.api, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
