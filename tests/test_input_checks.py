"""Inputs checked by value (issue 22, item 4 and the file parts of item 5): images decoded by mode, the pixel bound
read from the header, measurements and images in range, knob values in their domains, the divergence guard (and how
restore and evaluate fail on it), unreadable checkpoints, and a prior's network file checked by analyze and tune."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import zsguide
from zsguide.cli import main
from zsguide.data import common
from zsguide.data.common import decode_image
from zsguide.diffusion.schedule import VPSchedule
from zsguide.errors import ZSGuideError
from zsguide.safe_files import read_tensor_file
from zsguide.samplers import ParamSchedule, get_sampler
from zsguide.samplers.base import DIVERGENCE_BOUND, check_finite

from .cli_helpers import ROOT
from .test_bad_input import CKPT, WritesAFile, png_header_only

RGB = (np.random.default_rng(0).random((16, 16, 3)) * 0.5 * 255).astype(np.uint8)  # dark: mean about 0.26
TRUE = RGB.astype(np.float64) / 255


# ------------------------------------------------------------------------------------------------ images by mode
def test_every_pillow_mode_is_decoded_by_its_meaning(tmp_path):
    base = Image.fromarray(RGB, "RGB")
    grey = np.asarray(base.convert("L")).astype(np.float64) / 255

    def decoded(img: Image.Image, name: str, channels: int = 3) -> np.ndarray:
        img.save(tmp_path / name, **({"quality": 100} if name.endswith(".jpg") else {}))
        out = decode_image(tmp_path / name, channels)
        assert out.dtype == np.float32 and out.shape == (16, 16, channels)
        return out.astype(np.float64)

    assert np.abs(decoded(base, "rgb.png") - TRUE).max() < 1e-6
    # CMYK (JPEG and TIFF): Pillow's conversion back to RGB, not K taken as alpha (the mean was 1.0 here before)
    assert abs(decoded(base.convert("CMYK"), "cmyk.jpg").mean() - TRUE.mean()) < 2e-3
    assert np.abs(decoded(base.convert("CMYK"), "cmyk.tif") - TRUE).max() < 1e-6
    for mode in ("LAB",):  # (no file format holds HSV)
        err = np.abs(decoded(base.convert(mode), f"{mode}.tif") - TRUE)  # 8-bit LAB and HSV round dark colours
        assert err.max() < 0.08 and err.mean() < 5e-3, mode
    assert abs(decoded(base.convert("YCbCr"), "ycbcr.jpg").mean() - TRUE.mean()) < 5e-3  # JPEG's chroma subsampling
    # a palette of the image's own colours: exact
    few = Image.fromarray((RGB // 64 * 64).astype(np.uint8), "RGB")
    assert np.array_equal(
        decoded(few.convert("P", palette=Image.Palette.ADAPTIVE, colors=8), "p.png"), decoded(few, "few.png")
    )
    # alpha: composited over white, alpha colour + (1 - alpha)
    a = 128 / 255
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    assert np.abs(decoded(rgba, "rgba.png") - (a * TRUE + 1 - a)).max() < 1e-6
    la = base.convert("LA")
    la.putalpha(128)
    assert np.abs(decoded(la, "la.png", 1)[..., 0] - (a * grey + 1 - a)).max() < 1e-6  # was a (16, 16, 2) array
    assert np.abs(decoded(base.convert("L"), "l.png", 1)[..., 0] - grey).max() < 1e-6
    bilevel = decoded(base.convert("1"), "b.png", 1)
    assert set(np.unique(bilevel)) <= {0.0, 1.0}
    # 16- and 32-bit grey by their type's range; float grey as is
    g16 = (grey * 65535).round().astype(np.uint16)
    assert np.abs(decoded(Image.fromarray(g16), "g16.png", 1)[..., 0] - g16 / 65535).max() < 1e-6
    i32 = (grey * (2**31 - 1)).round().astype(np.int32)
    assert np.abs(decoded(Image.fromarray(i32, "I"), "i32.tif", 1)[..., 0] - grey).max() < 1e-6
    assert np.abs(decoded(Image.fromarray(grey.astype(np.float32), "F"), "f.tif", 1)[..., 0] - grey).max() < 1e-6
    # grey to colour repeats it
    assert np.array_equal(decoded(base.convert("L"), "l3.png")[..., 2], decoded(base.convert("L"), "l1.png", 1)[..., 0])


def test_values_a_mode_cannot_hold_and_tiffs_pillow_cannot_open(tmp_path):
    import tifffile

    Image.fromarray(np.full((4, 4), 2.0, np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(ZSGuideError, match=r"f.tif' \(mode 'F', 32-bit float grey\) holds values in \[2, 2\]"):
        decode_image(tmp_path / "f.tif", 1)
    Image.fromarray(np.full((4, 4), -5, np.int32), "I").save(tmp_path / "i.tif")
    with pytest.raises(ZSGuideError, match="i.tif' .*holds negative values"):
        decode_image(tmp_path / "i.tif", 1)
    rgb16 = (TRUE * 65535).round().astype(np.uint16)  # 16-bit RGB: Pillow cannot open it, tifffile reads it
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    assert np.abs(decode_image(tmp_path / "rgb16.tif", 3) - TRUE).max() < 1e-6
    colormap = np.zeros((3, 65536), np.uint16)
    tifffile.imwrite(tmp_path / "p16.tif", np.zeros((4, 4), np.uint16), photometric="palette", colormap=colormap)
    with pytest.raises(ZSGuideError, match="p16.tif' is a TIFF with photometric PALETTE, which zsguide does not"):
        decode_image(tmp_path / "p16.tif", 3)
    (tmp_path / "cut.png").write_bytes((tmp_path / "f.tif").read_bytes()[:20])
    with pytest.raises(ZSGuideError, match="cannot read image .*cut.png"):
        decode_image(tmp_path / "cut.png", 3)


def test_the_pixel_bound_is_read_from_the_header(tmp_path, monkeypatch):
    png_header_only(tmp_path / "huge.png", 9000, 9000)  # no pixel data: decoding it would fail differently
    with pytest.raises(ZSGuideError, match=r"is 9000x9000 \(81,000,000 pixels\), over zsguide's bound of 67,108,864"):
        decode_image(tmp_path / "huge.png", 3)
    # the folder data set shrinks a JPEG over the bound in the decoder (draft) and refuses any other format
    monkeypatch.setattr(common, "MAX_PIXELS", 1000)
    Image.fromarray(np.tile(RGB, (4, 4, 1)), "RGB").save(tmp_path / "big.jpg")  # 64 x 64 = 4096 pixels
    assert decode_image(tmp_path / "big.jpg", 3, reduce_to=16).shape == (16, 16, 3)  # 1/4: 256 pixels, side 16
    with pytest.raises(ZSGuideError, match="over zsguide's bound"):
        decode_image(tmp_path / "big.jpg", 3, reduce_to=40)  # no scale keeps a 40-pixel side under the bound
    Image.fromarray(np.tile(RGB, (4, 4, 1)), "RGB").save(tmp_path / "big.png")
    with pytest.raises(ZSGuideError, match="over zsguide's bound"):
        decode_image(tmp_path / "big.png", 3, reduce_to=16)


# ------------------------------------------------------------------------------------------------ values in range
def test_images_and_measurements_in_range():
    images = torch.full((1, 3, 32, 32), 0.5)
    with pytest.raises(ZSGuideError, match=r"images hold values in \[0.5, 1.5\], outside \[0, 1\]"):
        zsguide.measure(images + torch.linspace(0, 1, 32), "sr4", sigma_y=0.0)
    with pytest.raises(ZSGuideError, match="NaN or infinite"):
        zsguide.measure(images * float("nan"), "sr4", sigma_y=0.0, check_range=False)
    zsguide.measure(images + 1, "sr4", sigma_y=0.0, check_range=False)  # the Gaussian testbed's unclipped images
    # a measurement leaves [0, 1] through its noise: allowed up to 8 noise stds + 0.01
    noisy = zsguide.measure(torch.ones(1, 3, 32, 32), "deblur_gaussian", sigma_y=0.2, indices=[3])
    assert float(noisy.y.max()) > 1.3
    zsguide.Measurement.from_pixels(noisy.y[0], "deblur_gaussian", (3, 32, 32), sigma_y=0.2)
    with pytest.raises(ZSGuideError, match=r"measurement holds values in \[1.3, 1.3\], outside \[-0.01, 1.01\]"):
        zsguide.Measurement.from_pixels(torch.full((3, 8, 8), 1.3), "sr4", (3, 32, 32), sigma_y=0.0)
    zsguide.Measurement.from_pixels(torch.full((3, 8, 8), 1.3), "sr4", (3, 32, 32), sigma_y=0.05)  # margin 0.41
    with pytest.raises(ZSGuideError, match=r"\[50, 50\], outside \[-0.41, 1.41\]"):
        zsguide.Measurement.from_pixels(torch.full((3, 8, 8), 50.0), "sr4", (3, 32, 32), sigma_y=0.05)
    # inpainting: what the missing pixels hold is not looked at (they are zeroed)
    y = torch.full((3, 32, 32), 0.5)
    y[:, 8:24, 8:24] = 50.0  # inpaint_box's default box is the centre half
    zsguide.Measurement.from_pixels(y, "inpaint_box", (3, 32, 32), sigma_y=0.0)
    y[:, 0, 0] = 50.0
    with pytest.raises(ZSGuideError, match="outside"):
        zsguide.Measurement.from_pixels(y, "inpaint_box", (3, 32, 32), sigma_y=0.0)


# ------------------------------------------------------------------------------------------------ knob domains
def test_every_knob_value_is_checked_against_its_domain():
    ddrm = get_sampler("ddrm")
    params = ddrm.heuristic("sr4", 4, VPSchedule())
    ddrm.check_params(params)
    for value, ok in ((0.0, True), (1.0, True), (5.0, False), (-0.1, False)):
        p = ParamSchedule.from_dict(params.to_dict())
        p.values["eta"][2] = value
        if ok:
            ddrm.check_params(p)
        else:
            with pytest.raises(ZSGuideError, match=rf"knob 'eta' is {value:g} at step 2 \(t=\d+\), outside .*\[0, 1\]"):
                ddrm.check_params(p)
    dps = get_sampler("dps")
    p = dps.heuristic("sr4", 4, VPSchedule())
    p.values["zeta"][0] = 0.0
    with pytest.raises(ZSGuideError, match=r"knob 'zeta' is 0 at step 0 .*outside its domain > 0"):
        dps.check_params(p)
    diffpir = get_sampler("diffpir")  # a per-band knob: each band's value is checked
    p = diffpir.heuristic("deblur_gaussian", 3, VPSchedule())
    p.values["lam"][1] = [1.0, -2.0]
    with pytest.raises(ZSGuideError, match=r"knob 'lam' is -2 at step 1"):
        diffpir.check_params(p)


# ------------------------------------------------------------------------------------------------ divergence
def test_the_guard_stops_far_outside_the_data_range():
    x = torch.zeros(2, 3, 4, 4)
    check_finite(x + 0.999 * DIVERGENCE_BOUND, "ddrm", 0, 999, [4, 5])
    x[1, 0, 0, 0] = -2 * DIVERGENCE_BOUND
    with pytest.raises(
        ZSGuideError, match=r"sampler ddrm diverged at step 3 \(t=7\) for image index 5: \|x\| reached 2e\+03"
    ):
        check_finite(x, "ddrm", 3, 7, [4, 5])
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ZSGuideError, match="NaN/Inf at step 3 .*image index 4"):
        check_finite(x, "ddrm", 3, 7, [4, 5])


@pytest.fixture(scope="module")
def huge_zeta(tmp_path_factory):
    """DPS's params.json with zeta 1e38 (finite; it ran "complete" with PSNR -680 dB before the guard)."""
    p = get_sampler("dps").heuristic("sr4", 3, VPSchedule())
    p.values["zeta"] = [1e38] * 3
    path = tmp_path_factory.mktemp("zeta") / "zeta.json"
    p.save(path)
    return path


def test_restore_fails_on_divergence(huge_zeta, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["restore", "--ckpt_path", str(CKPT), "--task", "sr4", "--sampler", "dps", "--steps", "3",
               "--params", str(huge_zeta), "--num_images", "2", "--denoiser", "analytic", "--output", str(out),
               "--trainer.enable_progress_bar", "false"])  # fmt: skip
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1, err[-2000:]
    assert "sampler dps diverged at step 0" in lines[0] and "Traceback" not in err
    assert not (out / "summary.json").exists()


def test_evaluate_fails_the_diverged_cell(huge_zeta, tmp_path, capsys):
    out = tmp_path / "out"
    grid = ["--grid.samplers", "[dps]", "--grid.tasks", "[sr4]", "--grid.steps", "[3]",
            "--grid.params", f"[heuristic, {{source: {huge_zeta}, label: huge}}]"]  # fmt: skip
    rc = main(["evaluate", "--ckpt_path", str(CKPT), *grid, "--num_images", "2", "--denoiser", "analytic",
               "--bootstrap", "0", "--output", str(out), "--trainer.enable_progress_bar", "false"])  # fmt: skip
    err = capsys.readouterr().err
    assert "Traceback" not in err
    cells = {c["params"]: c for c in json.loads((out / "cells.json").read_text())["cells"]}
    assert cells["heuristic"]["status"] == "complete" and cells["heuristic"]["n"] == 2
    huge = cells["huge"]
    assert huge["status"] == "failed" and huge["n"] == 0, huge
    assert huge["failures"][0].startswith("sampler dps diverged at step 0 (t=999) for image index 0")
    assert "failed cells: dps/sr4/3/huge" in (out / "report.md").read_text()
    # the exit status of a grid with a failed cell is evaluate's own (docs/evaluate.md), not checked here
    del rc


# ------------------------------------------------------------------------------------------------ files
def test_unreadable_checkpoints_say_what_they_are(tmp_path):
    marker = tmp_path / "pwned"
    cases = {
        "random.ckpt": (
            np.random.default_rng(1).integers(0, 256, 1000, dtype=np.uint8).tobytes(),
            "not a PyTorch file",
        ),
        "cut.ckpt": (CKPT.read_bytes()[:50_000], "truncated or corrupt PyTorch file (50,000 bytes"),
        "empty.ckpt": (b"", "the file is empty (0 bytes)"),
        "plain.pkl": (pickle.dumps(WritesAFile(str(marker))), "not a PyTorch file (a Python pickle"),
        "text.ckpt": (b"hello\n", "not a PyTorch file (unknown content"),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        for mmap in (False, True):
            with pytest.raises(ZSGuideError) as info:
                read_tensor_file(tmp_path / name, "checkpoint", mmap=mmap)
            assert expected in str(info.value) and "weights_only=False" not in str(info.value), str(info.value)
    torch.save({"x": WritesAFile(str(marker))}, tmp_path / "evil.ckpt")  # torch's format, a pickle that runs code
    with pytest.raises(ZSGuideError, match=r"refused to load checkpoint .*evil.ckpt.*\(builtins.open|io.open\)"):
        read_tensor_file(tmp_path / "evil.ckpt", "checkpoint")
    assert not marker.exists()


def test_analyze_and_tune_check_the_network_file_of_a_prior(tmp_path):
    from zsguide.checkpoint import load_gaussian_prior
    from zsguide.networks import _file_hashes
    from zsguide.prior_file import prior_checkpoint

    g = load_gaussian_prior(CKPT)  # a fit checkpoint: its weights are inside, nothing to check
    net = tmp_path / "net.pt"
    net.write_bytes(b"abc")
    desc = {"arch": "adm", "files": _file_hashes({"weights": net})}
    torch.save(prior_checkpoint(g.surrogate, g.schedule, desc, {}, {}), tmp_path / "prior.ckpt")
    assert load_gaussian_prior(tmp_path / "prior.ckpt").surrogate.digest() == g.surrogate.digest()
    net.write_bytes(b"abd")  # same size, another sha256
    with pytest.raises(ZSGuideError, match="network file .*net.pt' changed since the prior was made"):
        load_gaussian_prior(tmp_path / "prior.ckpt")
    net.unlink()
    with pytest.raises(ZSGuideError, match="net.pt' does not exist any more"):
        load_gaussian_prior(tmp_path / "prior.ckpt")
    torch.save(prior_checkpoint(g.surrogate, g.schedule, {"arch": "adm"}, {}, {}), tmp_path / "bare.ckpt")
    with pytest.raises(ZSGuideError, match="describes no network file"):
        load_gaussian_prior(tmp_path / "bare.ckpt")
    assert ROOT.is_dir()
