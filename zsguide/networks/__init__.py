"""Pretrained eps networks from other projects behind one call: guided-diffusion (ADM) files and diffusers folders.

``--arch`` names the family and, for ADM, a preset:

- ``adm:ffhq_10m``, ``adm:imagenet256_uncond``: guided-diffusion's ``create_model`` arguments of the two public
  256x256 checkpoints (:data:`~zsguide.networks.adm.PRESETS`); ``--adm.NAME VALUE`` overrides one;
- ``adm``: guided-diffusion's ``create_model`` defaults, set by ``--adm.NAME VALUE`` (any configuration);
- ``diffusers``: a ``UNet2DModel`` folder (its ``config.json`` says everything).

:func:`load_network` reads and strictly loads a network and returns its *description*: a plain dict (architecture,
its arguments, the files' absolute paths and sha256, the native image size) that a prior file stores instead of the
weights; :func:`network_from_description` rebuilds the network from it and refuses files that changed since.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..diffusion.schedule import VPSchedule
from ..errors import ZSGuideError
from ..safe_files import file_sha256
from .adm import PRESETS, ADMConfig, preset_config
from .eps import EpsOutput

FAMILIES = ("adm", "diffusers")
ARCH_CHOICES = tuple(f"adm:{p}" for p in PRESETS) + ("adm", "diffusers")


def parse_arch(arch: str) -> tuple[str, str | None]:
    family, colon, preset = str(arch).partition(":")
    if family not in FAMILIES or (colon and (family == "diffusers" or not preset)):
        raise ZSGuideError(f"unknown --arch {arch!r}; choose one of {', '.join(ARCH_CHOICES)}")
    if preset:
        preset_config(preset)  # an unknown preset raises with the list of presets
    return family, preset or None


def _file_hashes(files: dict[str, Path]) -> dict[str, dict]:
    return {
        key: {"path": str(p.resolve()), "sha256": file_sha256(p), "bytes": p.stat().st_size} for key, p in files.items()
    }


def load_network(
    arch: str, path: str | Path, adm_overrides: dict | None = None, adm_schedule: VPSchedule | None = None
) -> tuple[nn.Module, dict, VPSchedule]:
    """Read the network at ``path`` as ``arch``: ``(eps module in eval mode, description, VP schedule)``.

    ADM files carry no schedule; ``adm_schedule`` (default: DDPM's linear 1e-4 .. 0.02, T = 1000, what both public
    checkpoints were trained with) is recorded. A diffusers folder's schedule comes from its scheduler config.
    """
    family, preset = parse_arch(arch)
    overrides = {k: v for k, v in (adm_overrides or {}).items() if v is not None}
    if family == "diffusers":
        if overrides:
            raise ZSGuideError(f"--adm.* options apply to --arch adm only (got {', '.join(sorted(overrides))})")
        from .diffusers_folder import folder_files, load_diffusers

        files = folder_files(path)
        eps, unet_config, schedule = load_diffusers(files)
        size = unet_config.get("sample_size")
        size = size[0] if isinstance(size, (list, tuple)) else size
        desc = {
            "arch": "diffusers",
            "preset": None,
            "config": unet_config,
            "channels": eps.channels,
            "image_size": int(size) if size else None,
            "divisor": 2 ** (len(unet_config["block_out_channels"]) - 1),
            "weights_at": "raw",
            "files": _file_hashes(files),
        }
    else:
        unknown = sorted(set(overrides) - set(ADMConfig.field_names()))
        if unknown:
            raise ZSGuideError(
                f"unknown --adm option(s) {', '.join(unknown)}; guided-diffusion's create_model takes "
                f"{', '.join(ADMConfig.field_names())}"
            )
        config = preset_config(preset, **overrides) if preset else ADMConfig(**overrides)
        from .adm_files import load_adm

        path = Path(path)
        net, where = load_adm(path, config, f"--arch {arch}")
        eps = EpsOutput(net, config.in_channels)
        schedule = adm_schedule or VPSchedule()
        desc = {
            "arch": "adm",
            "preset": preset,
            "config": config.to_dict(),
            "channels": config.in_channels,
            "image_size": config.image_size,
            "divisor": net.divisor,
            "weights_at": where,
            "files": _file_hashes({"weights": path}),
        }
    desc["parameters"] = sum(p.numel() for p in eps.parameters())
    desc["schedule"] = schedule.to_dict()
    return eps.requires_grad_(False), desc, schedule


def check_files(desc: dict, prior_path: str | Path) -> None:
    """Refuse a prior whose network files are missing or changed (sha256) since the prior was written."""
    for key, rec in desc["files"].items():
        p = Path(rec["path"])
        if not p.is_file():
            raise ZSGuideError(f"prior {str(prior_path)!r}: its network file {str(p)!r} does not exist any more")
        if p.stat().st_size != rec["bytes"] or file_sha256(p) != rec["sha256"]:
            raise ZSGuideError(
                f"prior {str(prior_path)!r}: network file {str(p)!r} changed since the prior was made "
                f"(sha256 {rec['sha256'][:12]}... recorded); re-run 'python -m zsguide prior' for the "
                f"new file"
            )


def network_from_description(desc: dict, prior_path: str | Path) -> nn.Module:
    """The eps network a prior file describes, after checking that its files are the ones hashed."""
    check_files(desc, prior_path)
    if desc["arch"] == "diffusers":
        from .diffusers_folder import load_diffusers

        eps, _, _ = load_diffusers({k: rec["path"] for k, rec in desc["files"].items()})  # the files hashed
    else:
        from .adm_files import load_adm

        net, _ = load_adm(desc["files"]["weights"]["path"], ADMConfig(**desc["config"]), "adm (as recorded)")
        eps = EpsOutput(net, desc["channels"])
    return eps.requires_grad_(False)
