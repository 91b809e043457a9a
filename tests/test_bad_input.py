"""Bad input, command by command (issue 22): each row is a command's arguments (files made by the fixtures below) and
the one-line error it must give. Every row runs ``zsguide.cli.main`` in process and must end with exit status 2,
exactly one ``error:`` line on stderr, no traceback, and nothing written to its output path. Only rows that fail
before any sampling or training are here (the whole file runs in well under 30 s); the restorations that diverge are
in tests/test_input_checks.py. The outcomes are counted in docs/reliability.md ("Bad input")."""

from __future__ import annotations

import json
import logging
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from zsguide.cli import main

from .cli_helpers import ROOT

CKPT = ROOT / "checkpoints" / "patches32.ckpt"  # 3 x 32 x 32: sr4 measures 3 x 8 x 8
OUT = "@OUT"  # replaced by the row's output path, which must not exist afterwards


class WritesAFile:
    """A pickle that, unpickled without ``weights_only``, would create a file (any code could run instead)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header says ``width x height`` (RGB, 8 bits) and which holds no pixel data: only a reader that
    decodes before it checks the size would notice that the data is missing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    f = {
        "random": d / "random.ckpt",
        "truncated": d / "truncated.ckpt",
        "empty": d / "empty.ckpt",
        "evil": d / "evil.ckpt",
        "marker": d / "pwned",
    }
    f["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    f["truncated"].write_bytes(CKPT.read_bytes()[:100_000])
    f["empty"].write_bytes(b"")
    torch.save({"zsguide": {"kind": "prior"}, "payload": WritesAFile(str(f["marker"]))}, f["evil"])
    # restore --input: sr4 on 3 x 32 x 32 measures 3 x 8 x 8
    for name, value in {"fifty": 50.0, "negative": -0.5, "nan": float("nan")}.items():
        f[name] = d / f"{name}.npy"
        np.save(f[name], np.full((3, 8, 8), value, dtype=np.float32))
    f["huge"] = d / "huge.png"
    png_header_only(f["huge"], 9000, 9000)
    f["palette16"] = d / "palette16.tif"  # a 16-bit palette TIFF: Pillow cannot open it, tifffile can, zsguide refuses
    import tifffile

    colormap = np.zeros((3, 65536), np.uint16)
    tifffile.imwrite(f["palette16"], np.zeros((8, 8), np.uint16), photometric="palette", colormap=colormap)
    # a params.json with DDRM's eta (a knob in [0, 1]) at 5.0, and DPS's zeta (> 0) at -1
    from zsguide.diffusion.schedule import VPSchedule
    from zsguide.samplers import get_sampler

    for name, sampler, knob, value in (("eta5", "ddrm", "eta", 5.0), ("zeta_neg", "dps", "zeta", -1.0)):
        p = get_sampler(sampler).heuristic("sr4", 3, VPSchedule())
        p.values[knob] = [value] * 3
        f[name] = d / f"{name}.json"
        p.save(f[name])
    # a prior file (the shipped checkpoint's surrogate) whose network file changed since, and one whose file is gone
    from zsguide.checkpoint import load_gaussian_prior
    from zsguide.networks import _file_hashes
    from zsguide.prior_file import prior_checkpoint

    g = load_gaussian_prior(CKPT)
    net = d / "net.pt"
    torch.save({"w": torch.zeros(3)}, net)
    desc = {"arch": "adm", "preset": None, "config": {}, "channels": 3, "files": _file_hashes({"weights": net})}
    for name in ("changed", "gone"):
        f[name] = d / f"{name}_prior.ckpt"
        torch.save(prior_checkpoint(g.surrogate, g.schedule, desc, g.meta.get("data") or {}, {}), f[name])
    torch.save({"w": torch.ones(3)}, net)  # same size, another sha256
    gone = d / "gone.pt"
    torch.save({"w": torch.zeros(3)}, gone)
    desc_gone = desc | {"files": _file_hashes({"weights": gone})}
    torch.save(prior_checkpoint(g.surrogate, g.schedule, desc_gone, g.meta.get("data") or {}, {}), f["gone"])
    gone.unlink()
    # a grid whose params.json does not fit its knob's domain
    f["grid_eta5"] = d / "grid.yaml"
    f["grid_eta5"].write_text(
        json.dumps(
            {
                "grid": {
                    "samplers": ["ddrm"],
                    "tasks": ["sr4"],
                    "steps": [3],
                    "params": [{"source": str(f["eta5"])}],
                }
            }
        )
    )
    return f


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is when a record is logged."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture(autouse=True)
def lightning_logs_to_this_stderr(monkeypatch):
    """Lightning's log handlers keep the stderr of the test that first imported Lightning, a capture closed since;
    point them at the current one, so that logging does not print a "--- Logging error ---" traceback here."""
    loggers = [
        logging.getLogger(),
        *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:  # not pytest's own capture handlers
                monkeypatch.setattr(handler, "stream", _CurrentStderr())


CKPT_ERRORS = [  # (file, expected substring): the same for every command that reads a checkpoint
    ("random", "not a PyTorch file"),
    ("truncated", "truncated or corrupt PyTorch file"),
    ("empty", "the file is empty"),
    ("evil", "refused to load checkpoint"),
]

RESTORE = ("--task", "sr4", "--sampler", "ddrm", "--steps", "3", "--denoiser", "analytic")
ROWS = {
    "restore": [
        *[((*RESTORE, "--ckpt_path", f"@{k}", "--output", OUT), msg) for k, msg in CKPT_ERRORS],
        ((*RESTORE, "--ckpt_path", "@changed", "--output", OUT), "changed since the prior was made"),
        ((*RESTORE, "--ckpt_path", CKPT, "--input", "@fifty", "--output", OUT), "holds values in [50, 50], outside"),
        ((*RESTORE, "--ckpt_path", CKPT, "--input", "@negative", "--output", OUT), "holds values in [-0.5, -0.5]"),
        ((*RESTORE, "--ckpt_path", CKPT, "--input", "@nan", "--output", OUT), "NaN or infinite"),
        ((*RESTORE, "--ckpt_path", CKPT, "--input", "@huge", "--output", OUT), "is 9000x9000 (81,000,000 pixels)"),
        ((*RESTORE, "--ckpt_path", CKPT, "--input", "@palette16", "--output", OUT), "photometric PALETTE"),
        ((*RESTORE, "--ckpt_path", CKPT, "--params", "@eta5", "--output", OUT), "knob 'eta' is 5 at step 0"),
        (
            (
                "--task",
                "sr4",
                "--sampler",
                "dps",
                "--steps",
                "3",
                "--ckpt_path",
                CKPT,
                "--params",
                "@zeta_neg",
                "--output",
                OUT,
            ),
            "knob 'zeta' is -1 at step 0",
        ),
    ],
    "evaluate": [
        *[(("--ckpt_path", f"@{k}", "--output", OUT), msg) for k, msg in CKPT_ERRORS[:2]],
        (("--ckpt_path", "@gone", "--output", OUT), "does not exist any more"),
        (("--ckpt_path", CKPT, "--config", "@grid_eta5", "--output", OUT), "knob 'eta' is 5 at step 0"),
    ],
    "analyze": [
        *[(("--ckpt_path", f"@{k}", "--task", "sr4", "--output", OUT), msg) for k, msg in CKPT_ERRORS],
        (("--ckpt_path", "@changed", "--task", "sr4", "--output", OUT), "changed since the prior was made"),
        (("--ckpt_path", "@gone", "--task", "sr4", "--output", OUT), "does not exist any more"),
    ],
    "tune": [
        *[
            (("--ckpt_path", f"@{k}", "--task", "sr4", "--sampler", "ddrm", "--output", OUT), msg)
            for k, msg in CKPT_ERRORS[:2]
        ],
        (
            ("--ckpt_path", "@changed", "--task", "sr4", "--sampler", "ddrm", "--output", OUT),
            "changed since the prior was made",
        ),
    ],
    "calibrate": [
        *[(("--ckpt_path", f"@{k}", "--output", OUT), msg) for k, msg in CKPT_ERRORS[:2]],
        (("--ckpt_path", "@changed", "--output", OUT), "changed since the prior was made"),
    ],
    "test": [
        *[(("--ckpt_path", f"@{k}"), msg) for k, msg in CKPT_ERRORS[:2]],
        (("--ckpt_path", "@changed"), "changed since the prior was made"),
    ],
    "prior": [
        *[
            (("--network", f"@{k}", "--arch", "adm:ffhq_10m", "--output", OUT), msg.replace("checkpoint", "network"))
            for k, msg in CKPT_ERRORS
        ],
    ],
}
CASES = [(command, i) for command, rows in ROWS.items() for i in range(len(rows))]


@pytest.mark.parametrize(("command", "row"), CASES, ids=[f"{c}-{i}" for c, i in CASES])
def test_bad_input_is_one_line(command, row, files, tmp_path, capsys):
    args, expected = ROWS[command][row]
    out = tmp_path / "out"
    argv = [command] + [
        str(out) if a == OUT else str(files[a[1:]]) if isinstance(a, str) and a.startswith("@") else str(a)
        for a in args
    ]
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err and "weights_only=False" not in err
    assert not out.exists()
    assert not files["marker"].exists()


FIT_ROWS = [  # (the folder's one file, expected substring): fit's data are checked when the Trainer sets them up
    ("palette16", "photometric PALETTE"),
    ("huge", "is 9000x9000 (81,000,000 pixels), over zsguide's bound"),
]


@pytest.mark.parametrize(("name", "expected"), FIT_ROWS, ids=[r[0] for r in FIT_ROWS])
def test_fit_bad_images_are_one_line(name, expected, files, tmp_path, capsys, monkeypatch):
    """fit on a folder holding one image it must refuse: one line, and no file written (Lightning has made its empty
    log folder ``runs/tiny/version_0/`` by then: docs/reliability.md)."""
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / files[name].name).write_bytes(files[name].read_bytes())
    monkeypatch.chdir(tmp_path)
    tiny = ROOT / "tests" / "configs" / "tiny_gaussian.yaml"
    rc = main(["fit", "--config", str(tiny), "--data.name", "folder", "--data.root", str(folder),
               "--data.split_policy", "all"])  # fmt: skip
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and expected in lines[0], err[-2000:]
    assert "Traceback" not in err
    assert [p for p in (tmp_path / "runs").rglob("*") if p.is_file()] == []
