"""``zsguide.RestorationCallback`` inside Lightning runs: the same numbers as the API's restore for the same images
and settings, training left exactly as without it, and clear errors. (Its DDP runs, 1 against 2 devices, are in
tests/test_fit_cli.py, which runs ``fit`` and ``validate`` with it in subprocesses.)"""

from __future__ import annotations

import csv
import math

import lightning as L
import pytest
import torch

import zsguide
from zsguide.checkpoint import load_score_module
from zsguide.data import ImageDataModule
from zsguide.diffusion.module import ScoreModule
from zsguide.errors import ZSGuideError

CKPT = "checkpoints/patches32.ckpt"


def _trainer(tmp_path, callbacks, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=L.pytorch.loggers.CSVLogger(tmp_path, name="run"),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **kwargs,
    )


def test_callback_logs_what_the_api_restores(tmp_path):
    """``validate`` of the shipped checkpoint with the callback on its held-out test split (3 images, x4
    super-resolution, DDRM and DPS, heuristic and spectral, 4 steps): each logged mean PSNR, SSIM and MSE equals the
    mean of ``zsguide.image_metrics`` over ``zsguide.restore``'s images for the same images, seed and settings (to
    float64 rounding of the mean: 1e-12), the CSV logger's metrics.csv carries them, DPS's gradients worked inside
    validation's inference mode, and a grid image was written."""
    module, meta = load_score_module(CKPT)
    module.hparams["num_samples"], module.hparams["sample_steps"] = 1, 1  # the module's own validation grid: cheap
    dm = ImageDataModule(**{k: meta["data"][k] for k in ("name", "image_size", "channels", "seed")}, n_val=8)
    cb = zsguide.RestorationCallback(
        tasks=["sr4"], samplers=["ddrm", "dps"], params=["heuristic", "spectral"], steps=4, num_images=3, split="test"
    )
    _trainer(tmp_path, [cb], limit_val_batches=1).validate(module, datamodule=dm)
    assert {(r["sampler"], r["source"]) for r in cb.records} == {
        (s, p) for s in ("ddrm", "dps") for p in ("heuristic", "spectral")
    }
    prior = zsguide.load_prior(CKPT)
    images, indices = prior.test_images(3)
    m = zsguide.measure(images, "sr4", sigma_y=0.01, indices=indices)
    for r in cb.records:
        out = zsguide.restore(prior, m, r["sampler"], steps=4, params=r["source"])
        metrics = zsguide.image_metrics(out.images, images)
        for k in ("psnr", "ssim", "mse"):
            assert r[k] == pytest.approx(float(metrics[k].mean()), rel=1e-12, abs=1e-15), (r, k)
    assert all("gain_psnr" in r for r in cb.records if r["source"] == "spectral")
    rows = list(csv.DictReader(open(tmp_path / "run" / "version_0" / "metrics.csv")))
    logged = {k: float(v) for row in rows for k, v in row.items() if k.startswith("restoration/") and v}
    ddrm = next(r for r in cb.records if (r["sampler"], r["source"]) == ("ddrm", "heuristic"))
    assert logged["restoration/sr4/ddrm/heuristic/psnr"] == pytest.approx(ddrm["psnr"], rel=1e-12)
    assert math.isfinite(logged["restoration/sr4/dps/spectral/fd"]) and "restoration/sr4/dps/gain/psnr" in logged
    assert (tmp_path / "run" / "version_0" / "restoration" / "step000000_sr4.png").stat().st_size > 500


def _tiny_module() -> tuple[ScoreModule, ImageDataModule]:
    dm = ImageDataModule(name="gaussian", image_size=8, channels=1, batch_size=8, n_train=32, n_val=8, n_test=8)
    module = ScoreModule(
        channels=1, image_size=8, base_channels=8, channel_mults=[1], num_res_blocks=1, attention_levels=[]
    )
    module.hparams["num_samples"], module.hparams["sample_steps"] = 1, 1
    return module, dm


def test_training_is_unchanged_by_the_callback(tmp_path):
    """Two fits of a tiny prior from one seed (4 steps, validation every 2), one with the callback at every
    validation and every step (DPS differentiates through the network; the design differentiates its knobs): the
    weights and the EMA are equal bit for bit, so the callback left no gradient on the parameters, restored their
    flags and the train mode, and drew nothing from the global random generators; it ran 4 times (steps 1 to 4, a
    validation's step not twice)."""
    states = []
    for with_callback in (False, True):
        L.seed_everything(0)
        module, dm = _tiny_module()
        callbacks = []
        if with_callback:
            cb = zsguide.RestorationCallback(
                tasks=["inpaint_random"],
                samplers=["dps", "ddrm"],
                params=["heuristic", "spectral"],
                steps=3,
                num_images=2,
                every_n_steps=1,
                grid_images=0,
            )
            callbacks = [cb]
        _trainer(
            tmp_path / str(with_callback),
            callbacks,
            max_steps=4,
            val_check_interval=2,
            check_val_every_n_epoch=None,
            limit_val_batches=1,
            num_sanity_val_steps=0,
        ).fit(module, datamodule=dm)
        states.append({k: v.clone() for k, v in module.state_dict().items()})
        assert all(p.requires_grad for p in module.net.parameters()) and module.training
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    assert sorted({r["step"] for r in cb.records}) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"tasks": ["sr3"]}, "unknown task 'sr3'"),
        ({"samplers": ["ddpm"]}, "unknown sampler 'ddpm'"),
        ({"params": ["tuned.json"]}, "parameter source 'tuned.json'"),
        ({"num_images": 1}, "num_images must be >= 2"),
        ({"sigma_y": float("nan")}, "sigma_y must be a finite number"),
        ({"split": "validation"}, "split must be train, val or test"),
        ({"design": {"trust_factor": 0.5}}, "trust_factor"),
    ],
)
def test_bad_settings_are_refused_when_built(kwargs, expected):
    with pytest.raises(ZSGuideError, match=expected):
        zsguide.RestorationCallback(**kwargs)


def test_too_few_images_is_one_clear_error(tmp_path):
    module, dm = _tiny_module()
    module.fit_surrogate(dm.dataset("train"))
    cb = zsguide.RestorationCallback(tasks=["sr2"], samplers=["ddrm"], params=["heuristic"], num_images=9)
    with pytest.raises(ZSGuideError, match="the val split holds 8 images, fewer than num_images = 9"):
        _trainer(tmp_path, [cb], limit_val_batches=1).validate(module, datamodule=dm)
