"""Bring your own prior: ADM and diffusers networks loaded strictly, prior files, safe loading, restore through them.

No pretrained weights exist on these machines, so the real loading code is tested on networks the tests create and
save in the genuine formats (a guided-diffusion raw state dict, an InverseBench-style checkpoint, a diffusers folder
written by ``save_pretrained``), and our ADM implementation is cross-checked against deepinv's independent one.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage import io as skio

from zsguide.checkpoint import load_gaussian_prior, load_score_module, read_checkpoint
from zsguide.cli import main
from zsguide.errors import ZSGuideError
from zsguide.networks import load_network
from zsguide.networks.adm import ADMConfig, ADMUNet, preset_config

from .cli_helpers import run_cli

TINY_ADM = dict(
    image_size=64,
    num_channels=32,
    num_res_blocks=1,
    channel_mult="1,2",
    learn_sigma=True,
    attention_resolutions="32",
    num_head_channels=16,
    resblock_updown=True,
)
TINY_ARGS = [f"--adm.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in TINY_ADM.items()]


def perturbed(module: torch.nn.Module, seed: int, scale: float = 0.02) -> dict:
    """The module's state dict plus small noise, so that zero-initialised layers do not hide a wiring error."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: v + scale * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
        for k, v in module.state_dict().items()
    }


def write_photos(folder: Path, n: int, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    img = skdata.astronaut()
    for i in range(n):
        y, x = rng.integers(0, 512 - size - 20, 2)
        skio.imsave(folder / f"im{i:02d}.png", img[y : y + size + 20, x : x + size], check_contrast=False)
    return folder


@pytest.fixture(scope="module")
def tiny_adm(tmp_path_factory):
    """A random tiny ADM network saved as guided-diffusion saves its files (a raw state dict)."""
    work = tmp_path_factory.mktemp("adm")
    torch.manual_seed(0)
    net = ADMUNet(ADMConfig(**TINY_ADM)).eval()
    net.load_state_dict(perturbed(net, 1))
    torch.save(net.state_dict(), work / "tiny_adm.pt")
    return work, net


def tiny_prior_options(work, photos) -> list:
    """``prior``'s options for the tiny ADM network of ``work`` and the photographs in ``photos`` (all of them)."""
    network = ["--network", work / "tiny_adm.pt", "--arch", "adm", *TINY_ARGS]
    return [*network, "--data.name", "folder", "--data.root", photos, "--data.split_policy", "all"]


@pytest.fixture(scope="module")
def tiny_prior(tiny_adm):
    work, _ = tiny_adm
    photos = write_photos(work / "photos", 10, 64)
    args = ["prior", *tiny_prior_options(work, photos), "--output", work / "prior.ckpt"]
    assert main([str(a) for a in args]) == 0  # in this process (the end-to-end runs are the DDP test's)
    return work, work / "prior.ckpt"


# ------------------------------------------------------------------------------------------------ ADM networks
def test_adm_raw_state_dict_gives_the_modules_eps(tiny_adm):
    work, net = tiny_adm
    eps, desc, schedule = load_network("adm", work / "tiny_adm.pt", TINY_ADM)
    x, t = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)), torch.tensor([3, 900])
    with torch.no_grad():
        expected = net(x, t)
        got = eps(x, t)
    assert expected.shape == (2, 6, 64, 64) and got.shape == (2, 3, 64, 64)  # learned sigma: the eps half
    assert torch.equal(got, expected[:, :3]) and expected[:, :3].abs().mean() > 0.05
    assert desc["arch"] == "adm" and desc["config"]["num_channels"] == 32 and desc["weights_at"] == "raw"
    assert desc["files"]["weights"]["sha256"] and schedule.kind == "linear" and schedule.num_timesteps == 1000


def test_inversebench_checkpoint_layout_loads_the_same_network(tiny_adm, tmp_path):
    work, net = tiny_adm
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    torch.save({"ema": state, "net": {k: torch.zeros_like(v) for k, v in state.items()}, "step": 7}, tmp_path / "ib.pt")
    eps, desc, _ = load_network("adm", tmp_path / "ib.pt", TINY_ADM)
    x, t = torch.randn(1, 3, 64, 64), torch.tensor([500])
    with torch.no_grad():
        assert torch.equal(eps(x, t), net(x, t)[:, :3])
    assert desc["weights_at"] == "ema/model."


def test_wrong_architecture_is_one_line_listing_the_keys(tiny_adm, tmp_path):
    work, net = tiny_adm
    with pytest.raises(ZSGuideError) as err:
        load_network("adm:ffhq_10m", work / "tiny_adm.pt")
    message = str(err.value)
    assert "\n" not in message and "tiny_adm.pt" in message and "adm:ffhq_10m" in message
    assert "missing keys (" in message and "shape mismatches (" in message and "input_blocks." in message
    # a learned-sigma file read as eps-only: the shape mismatch of the last conv, and the option that fixes it
    with pytest.raises(
        ZSGuideError,
        match=r"out\.2\.weight file \(6, 32, 3, 3\) vs network \(3, 32, 3, 3\).*"
        r"--adm.learn_sigma true",
    ):
        load_network("adm", work / "tiny_adm.pt", TINY_ADM | {"learn_sigma": False})
    # a class-conditional file
    torch.save(net.state_dict() | {"label_emb.weight": torch.zeros(1000, 128)}, tmp_path / "cond.pt")
    with pytest.raises(ZSGuideError, match="class-conditional.*1000 classes"):
        load_network("adm", tmp_path / "cond.pt", TINY_ADM)
    with pytest.raises(ZSGuideError, match="unknown ADM preset 'ffhq'.*adm:ffhq_10m"):
        load_network("adm:ffhq", work / "tiny_adm.pt")
    with pytest.raises(ZSGuideError, match="unknown --adm option.*num_chanels"):
        load_network("adm", work / "tiny_adm.pt", {"num_chanels": 3})
    (tmp_path / "cut.pt").write_bytes((work / "tiny_adm.pt").read_bytes()[:5000])
    with pytest.raises(ZSGuideError, match="cannot read network file .*cut.pt"):
        load_network("adm", tmp_path / "cut.pt", TINY_ADM)


@pytest.mark.slow
def test_our_adm_matches_deepinv_diffunet_in_the_ffhq_preset():
    """deepinv's DiffUNet (an independent implementation of the same guided-diffusion network) loads into our
    ``ffhq_10m`` preset, and both give the same eps on a 64x64 input within float32 rounding."""
    deepinv = pytest.importorskip("deepinv")
    torch.manual_seed(0)
    theirs = deepinv.models.DiffUNet(pretrained=None).eval()  # dropout 0.1: eval mode
    state = {
        k: v for k, v in perturbed(theirs, 3).items() if k not in ("sqrt_1m_alphas_cumprod", "sqrt_alphas_cumprod")
    }  # deepinv's two schedule buffers
    theirs.load_state_dict(state, strict=False)
    ours = ADMUNet(preset_config("ffhq_10m")).eval()
    ours.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in ours.parameters()) == 93_563_910
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([25, 750])
    with torch.no_grad():
        a, b = theirs.forward_diffusion(x, t), ours(x, t)
    assert a.shape == b.shape == (2, 6, 64, 64) and a[:, :3].abs().mean() > 0.05
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ diffusers
@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory):
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed: pip install -e '.[diffusers]'")
    root = tmp_path_factory.mktemp("ddpm")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 64),
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    ).eval()
    unet.load_state_dict(perturbed(unet, 5))
    unet.save_pretrained(root / "model")
    diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").save_pretrained(root / "model")
    return root / "model", unet


def test_diffusers_folder_gives_the_modules_eps(diffusers_folder):
    folder, unet = diffusers_folder
    assert (folder / "diffusion_pytorch_model.safetensors").is_file()
    eps, desc, schedule = load_network("diffusers", folder)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 800])
    with torch.no_grad():
        expected = unet(x, t).sample
        assert torch.equal(eps(x, t), expected) and expected.abs().mean() > 0.05
    assert schedule.kind == "linear" and desc["image_size"] == 32 and desc["divisor"] == 2
    assert set(desc["files"]) == {"config", "weights", "scheduler"}


@pytest.mark.parametrize(
    "change,expected",
    [
        ({"prediction_type": "v_prediction"}, "prediction_type 'v_prediction'"),
        ({"beta_schedule": "scaled_linear"}, "beta_schedule 'scaled_linear'"),
        ({"rescale_betas_zero_snr": True}, "alphas_cumprod differ from the linear VP schedule"),
        ({"trained_betas": [0.1] * 1000}, "trained_betas"),
        ({"_class_name": "ScoreSdeVeScheduler"}, "is a ScoreSdeVeScheduler"),
    ],
)
def test_diffusers_schedules_that_are_not_ours_are_refused(diffusers_folder, tmp_path, change, expected):
    folder, _ = diffusers_folder
    shutil.copytree(folder, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "scheduler_config.json").read_text()) | change
    (tmp_path / "m" / "scheduler_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ZSGuideError, match=expected):
        load_network("diffusers", tmp_path / "m")


def test_diffusers_weights_that_do_not_match_the_config_are_refused(diffusers_folder, tmp_path):
    folder, _ = diffusers_folder
    shutil.copytree(folder, tmp_path / "m")
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "m" / "diffusion_pytorch_model.safetensors"))
    dropped = sorted(state)[0]
    del state[dropped]
    save_file(state, str(tmp_path / "m" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ZSGuideError, match=rf"1 missing keys \({dropped}\)"):
        load_network("diffusers", tmp_path / "m")


# ------------------------------------------------------------------------------------------------ safe loading
class WritesAFile:
    """A pickle that, when loaded without weights_only, creates the file ``path`` (any code could run instead)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_crafted_checkpoint_cannot_run_code(tmp_path, tiny_adm, capsys):
    marker = tmp_path / "pwned"
    torch.save({"zsguide": {"kind": "prior"}, "payload": WritesAFile(str(marker))}, tmp_path / "evil.ckpt")
    torch.save({"input_blocks.0.0.weight": WritesAFile(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(ZSGuideError, match="refused to load checkpoint .*evil.ckpt.*never unpickles"):
        read_checkpoint(tmp_path / "evil.ckpt")
    with pytest.raises(ZSGuideError, match="refused to load network file .*evil.pt"):
        load_network("adm", tmp_path / "evil.pt", TINY_ADM)
    rc = main(["restore", "--ckpt_path", str(tmp_path / "evil.ckpt"), "--output", str(tmp_path / "out")])
    assert rc == 2 and "refused to load" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()
    # the pickle is live: loading it the unsafe way does create the file (so the test above can fail)
    torch.load(tmp_path / "evil.ckpt", weights_only=False)
    assert marker.exists()


def test_the_package_never_unpickles_code():
    root = Path(__file__).resolve().parents[1] / "zsguide"
    unsafe = re.compile(r"weights_only\s*=\s*False|pickle\.loads?\(|torch\.load\((?![^)]*weights_only\s*=\s*True)")
    offenders = [
        f"{p}:{i}"
        for p in root.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if unsafe.search(line)
    ]
    assert offenders == []


# ------------------------------------------------------------------------------------------------ prior files
def test_prior_file_holds_the_surrogate_and_a_checked_pointer(tiny_prior, tiny_adm):
    work, prior = tiny_prior
    assert prior.stat().st_size < 200_000  # the network is not copied
    module, meta = load_score_module(prior)
    assert meta["kind"] == "prior" and meta["image_shape"] == [3, 64, 64] and meta["data"]["name"] == "folder"
    assert meta["network"]["files"]["weights"]["path"] == str((work / "tiny_adm.pt").resolve())
    light = load_gaussian_prior(prior)  # what analyze and tune read
    assert light.surrogate.digest() == module.surrogate.digest() == meta["surrogate_digest"]
    _, net = tiny_adm
    x, t = torch.randn(2, 3, 64, 64), torch.tensor([100, 400])
    with torch.no_grad():
        assert torch.equal(module.network_denoiser().eps(x, t), net(x, t)[:, :3])


@pytest.mark.slow
def test_prior_on_two_devices_equals_one(tiny_prior, tmp_path):
    """11 images (an uneven split: 6 and 5) on 2 DDP processes give the surrogate of 1 process."""
    work, _ = tiny_prior
    photos = write_photos(tmp_path / "photos", 11, 64)
    common = [*tiny_prior_options(work, photos), "--batch_size", "4"]
    assert main(["prior", *map(str, common), "--output", str(tmp_path / "one.ckpt")]) == 0  # in this process
    ddp = ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
    proc = run_cli("prior", *common, *ddp, "--output", tmp_path / "two.ckpt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = read_checkpoint(tmp_path / "one.ckpt"), read_checkpoint(tmp_path / "two.ckpt")
    assert two["zsguide"]["surrogate_fit"]["devices"] == 2 and two["zsguide"]["surrogate_fit"]["images"] == 11
    assert one["zsguide"]["surrogate_fit"]["images"] == 11
    for key in ("surrogate.mean", "surrogate.spectrum"):
        torch.testing.assert_close(two["state_dict"][key], one["state_dict"][key], rtol=1e-12, atol=1e-15)
    assert two["zsguide"]["network"] == one["zsguide"]["network"]


def test_prior_refuses_a_changed_network_file(tiny_prior, tmp_path, capsys):
    work, prior = tiny_prior
    shutil.copy(work / "tiny_adm.pt", tmp_path / "net.pt")
    shutil.copy(prior, tmp_path / "prior.ckpt")
    ckpt = read_checkpoint(tmp_path / "prior.ckpt")
    ckpt["zsguide"]["network"]["files"]["weights"]["path"] = str(tmp_path / "net.pt")
    torch.save(ckpt, tmp_path / "prior.ckpt")
    load_score_module(tmp_path / "prior.ckpt")  # unchanged: loads
    state = torch.load(tmp_path / "net.pt", weights_only=True)
    state["out.2.bias"] = state["out.2.bias"] + 1e-3
    torch.save(state, tmp_path / "net.pt")
    rc = main(["restore", "--ckpt_path", str(tmp_path / "prior.ckpt"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "changed since the prior was made" in err and "net.pt" in err
    assert len(error_lines_of(err)) == 1 and not (tmp_path / "out").exists()


def error_lines_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["--arch", "adm:ffhq_10m"], "missing keys"),
        (["--arch", "unet"], "unknown --arch 'unet'"),
        (["--arch", "adm", *TINY_ARGS, "--data.image_size", "31"], "not a multiple of 2"),
        (["--arch", "adm", *TINY_ARGS, "--data.channels", "1"], "does not match the network's 3 input channels"),
        (["--arch", "adm", *TINY_ARGS, "--data.root", "nowhere"], "'nowhere' does not exist"),
        (["--arch", "adm", *TINY_ARGS, "--trainer.strategy", "ddp_spawn"], "spawned processes cannot return"),
        (["--arch", "adm", *TINY_ARGS, "--adm.num_channels", "48"], "multiple of 32"),
        (["--arch", "adm", *TINY_ARGS, "--trainer.accelerator", "abacus"], "invalid --trainer options"),
    ],
)
def test_prior_bad_input_is_one_line_and_no_file(tiny_prior, tmp_path, capsys, extra, expected):
    work, _ = tiny_prior
    rc = main(
        [
            "prior",
            "--network",
            str(work / "tiny_adm.pt"),
            "--data.name",
            "folder",
            "--data.root",
            str(work / "photos"),
            "--data.split_policy",
            "all",
            *extra,
            "--output",
            str(tmp_path / "p.ckpt"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and expected in err and len(error_lines_of(err)) == 1, err
    assert not (tmp_path / "p.ckpt").exists()


def restore_through(prior, out, sampler: str, *extra, task: str = "sr2", steps: int = 3, num_images: int = 1) -> None:
    """``python -m zsguide restore`` through the prior file, in this process, without a progress bar; it must
    succeed."""
    args = ["restore", "--ckpt_path", prior, "--task", task, "--sampler", sampler, "--steps", steps]
    args += ["--num_images", num_images, *extra, "--output", out, "--trainer.enable_progress_bar", "false"]
    assert main([str(a) for a in args]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["ddrm", "ddnm", "pigdm", "dps", "diffpir", "oracle"])
def test_every_sampler_restores_through_a_prior(tiny_prior, tmp_path, sampler):
    """The path, not the numbers: a random network restores nothing, but every sampler runs through it."""
    work, prior = tiny_prior
    out = tmp_path / sampler
    restore_through(prior, out, sampler, num_images=2)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["image_shape"] == [3, 64, 64] and np.isfinite(summary["psnr_mean"])
    assert summary["network"]["arch"] == "adm" and summary["network"]["files"]["weights"]["sha256"]
    assert np.load(out / "restored" / "00001.npy").shape == (3, 64, 64)


@pytest.mark.slow
def test_analyze_and_spectral_restore_on_a_prior(tiny_prior, tmp_path, capsys):
    work, prior = tiny_prior
    rc = main(
        [
            "analyze",
            "--ckpt_path",
            str(prior),
            "--task",
            "deblur_gaussian",
            "--steps",
            "5",
            "--samplers",
            "[ddrm, diffpir]",
            "--output",
            str(tmp_path / "an"),
        ]
    )
    assert rc == 0
    analysis = json.loads((tmp_path / "an" / "analysis.json").read_text())
    assert (
        analysis["samplers"]["diffpir"]["spectral"]["avg_w2"] < analysis["samplers"]["diffpir"]["heuristic"]["avg_w2"]
    )
    # 64 x 64 x4: more alias blocks than the engine models whole, so a stated sample (figures included)
    rc = main(
        [
            "analyze",
            "--ckpt_path",
            str(prior),
            "--task",
            "sr4",
            "--steps",
            "4",
            "--samplers",
            "[ddrm, dps]",
            "--output",
            str(tmp_path / "an_sr"),
        ]
    )
    assert rc == 0 and (tmp_path / "an_sr" / "transfer_functions.png").stat().st_size > 1000
    assert "dimension reduction" in json.loads((tmp_path / "an_sr" / "analysis.json").read_text())["reduction"]
    restore_through(prior, tmp_path / "r", "diffpir", "--params", "spectral", task="deblur_gaussian", steps=5)
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["params_source"] == "spectral"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("sampler", ["ddrm", "dps"])
def test_restore_through_a_prior_on_cuda_matches_the_cpu(tiny_prior, tmp_path, sampler):
    """The ADM network of a prior file on the GPU: the same restorations as on the CPU (float64 both)."""
    work, prior = tiny_prior
    outs = {}
    for device in ("cpu", "gpu"):
        out = tmp_path / device
        restore_through(
            prior, out, sampler, "--trainer.accelerator", device, "--trainer.precision", "64-true", num_images=2
        )
        outs[device] = np.stack([np.load(out / "restored" / f"{i:05d}.npy") for i in range(2)])
    np.testing.assert_allclose(outs["gpu"], outs["cpu"], atol=1e-4)  # GroupNorm32 computes in float32


@pytest.mark.slow
def test_restore_through_a_prior_in_float64_differs_from_float32_by_rounding_only(tiny_prior, tmp_path):
    """``--trainer.precision 64-true`` converts the ADM network (its time embedding and GroupNorm follow the weights'
    dtype): the same restoration as in float32 up to float32 rounding, amplified by three DPS steps."""
    work, prior = tiny_prior
    outs = {}
    for precision in ("32-true", "64-true"):
        out = tmp_path / precision
        restore_through(prior, out, "dps", "--trainer.precision", precision)
        outs[precision] = np.load(out / "restored" / "00000.npy")
    assert 0 < np.abs(outs["64-true"] - outs["32-true"]).max() < 1e-3
