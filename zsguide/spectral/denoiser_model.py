"""The denoiser the closed forms assume: the surrogate's Wiener denoiser, or a network's measured response.

Every closed form (transfer.py) writes the denoiser, per step at time t, in the surrogate's decorrelated Fourier
basis (``u_hat = F Q (x - mu)``) as

    x0_hat = mu + F^H g_t F (x_t - sqrt(abar_t) mu) + n_t,   n_t ~ N(0, F^H diag(r_t) F), fresh at every call,

    gaussian    (default)  g_t = c_t = sqrt(abar) lambda / (abar lambda + 1 - abar), r_t = 0: the Wiener denoiser,
                           exact for the surrogate (theory.md §3);
    calibrated             g_t and r_t measured by ``python -m zsguide calibrate`` (commands/calibration/response.py): the
                           network's least-squares gain per frequency and the power of what it leaves unexplained.

The residual enters each sampler step through that step's coefficient on ``x0_hat`` (transfer.py); the Jacobian of
the denoiser, which DPS and PiGDM differentiate through, is ``g_t`` (the residual has none, as for a linear filter
plus independent noise).

Between calibrated times the model interpolates, linearly in ``log SNR = log(abar / (1 - abar))``, the ratios
``g_t / c_t`` and ``r_t / v_t`` (``v_t = (1 - abar) lambda / (abar lambda + 1 - abar)``, the Wiener error): both
are constant in t for a denoiser that is the Wiener denoiser of another spectrum's scale, and the times ``calibrate``
picks are evenly spaced in log SNR (25 over the whole schedule by default). Outside the calibrated range the nearest
time's ratios are held.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ZSGuideError

DENOISER_MODELS = ("gaussian", "calibrated")


def wiener_gain(lam: torch.Tensor, a) -> torch.Tensor:
    """``c_t = sqrt(abar) lambda / (abar lambda + 1 - abar)`` (``a`` a float, or a tensor broadcast against ``lam``)."""
    return a**0.5 * lam / (a * lam + 1 - a)


def wiener_error(lam: torch.Tensor, a) -> torch.Tensor:
    """``v_t = Var[x0 | x_t] = (1 - abar) lambda / (abar lambda + 1 - abar)`` (``a`` as for :func:`wiener_gain`)."""
    return (1 - a) * lam / (a * lam + 1 - a)


@dataclass
class CalibratedDenoiser:
    """A measured denoiser response: ratios to the Wiener gain and error at the calibrated times (module docstring).

    ``abar`` (T,) the calibrated times' ``abar_t``; ``gain_ratio``, ``residual_ratio`` (T, C, H, W); ``spectrum`` the
    surrogate's ``lambda`` (C, H, W); ``digest`` names the calibration (it enters design cache keys)."""

    abar: torch.Tensor
    gain_ratio: torch.Tensor
    residual_ratio: torch.Tensor
    spectrum: torch.Tensor
    digest: str
    source: str = ""

    @classmethod
    def from_fields(
        cls, spectrum: torch.Tensor, abar: torch.Tensor, gain: torch.Tensor, residual: torch.Tensor, source: str = ""
    ) -> "CalibratedDenoiser":
        """From a gain and residual power per time and frequency (T, C, H, W) at times ``abar`` (T,)."""
        lam = spectrum.detach().cpu().to(torch.float64)
        a = torch.as_tensor(abar, dtype=torch.float64).reshape(-1, 1, 1, 1)
        c, s = wiener_gain(lam, a).clamp(min=1e-300), wiener_error(lam, a).clamp(min=1e-300)
        order = torch.argsort(a.flatten())
        g, r = gain.detach().cpu().to(torch.float64), residual.detach().cpu().to(torch.float64).clamp(min=0)
        if not (torch.isfinite(g).all() and torch.isfinite(r).all()):
            raise ZSGuideError(f"calibration {source or '(given fields)'} holds non-finite gains or residuals")
        h = hashlib.sha256()
        for t in (a.flatten()[order], g[order], r[order]):
            h.update(t.contiguous().numpy().tobytes())
        return cls(a.flatten()[order], (g / c)[order], (r / s)[order], lam, h.hexdigest()[:16], source)

    def fields(self, a: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g_t, r_t)`` per frequency (C, H, W) at ``abar_t = a``: the ratios interpolated in log SNR."""
        snr = torch.log(self.abar / (1 - self.abar))
        x = math.log(a / (1 - a))
        j = int(torch.searchsorted(snr, torch.tensor(x, dtype=torch.float64)))
        if j <= 0:
            gr, rr = self.gain_ratio[0], self.residual_ratio[0]
        elif j >= len(snr):
            gr, rr = self.gain_ratio[-1], self.residual_ratio[-1]
        else:
            w = (x - float(snr[j - 1])) / float(snr[j] - snr[j - 1])
            gr = (1 - w) * self.gain_ratio[j - 1] + w * self.gain_ratio[j]
            rr = (1 - w) * self.residual_ratio[j - 1] + w * self.residual_ratio[j]
        return gr * wiener_gain(self.spectrum, a), rr * wiener_error(self.spectrum, a)


def load_calibration(path: str | Path, surrogate, checkpoint_sha256: str | None = None) -> CalibratedDenoiser:
    """A calibration file written by ``python -m zsguide calibrate``, checked against the surrogate it must describe
    (and the checkpoint's sha256 when given): one-line errors naming the file otherwise."""
    from ..safe_files import read_tensor_file

    d = read_tensor_file(path, "calibration file")
    if not isinstance(d, dict) or d.get("zsguide", {}).get("kind") != "calibration":
        raise ZSGuideError(f"{str(path)!r} is not a calibration file (written by 'python -m zsguide calibrate')")
    meta = d["zsguide"]
    if meta.get("surrogate_digest") != surrogate.digest():
        raise ZSGuideError(
            f"calibration {str(path)!r} was measured against another Gaussian surrogate (digest "
            f"{meta.get('surrogate_digest')}, this checkpoint's is {surrogate.digest()}); run "
            f"'python -m zsguide calibrate' on this checkpoint"
        )
    if checkpoint_sha256 is not None and meta.get("checkpoint_sha256") != checkpoint_sha256:
        raise ZSGuideError(
            f"calibration {str(path)!r} was measured on another checkpoint file (sha256 "
            f"{str(meta.get('checkpoint_sha256'))[:12]}..., this one is {checkpoint_sha256[:12]}...)"
        )
    if tuple(d["gain"].shape[1:]) != tuple(surrogate.shape):
        raise ZSGuideError(
            f"calibration {str(path)!r} has images of shape {tuple(d['gain'].shape[1:])}, the "
            f"surrogate {tuple(surrogate.shape)}"
        )
    return CalibratedDenoiser.from_fields(surrogate.spectrum, d["abar"], d["gain"], d["residual"], str(path))


def calibration_path(ckpt_path: str | Path, denoiser: str, sha: str) -> Path:
    """Where ``python -m zsguide calibrate`` keeps the calibration of checkpoint ``ckpt_path`` (whose file has sha256
    ``sha``) for ``denoiser`` (network or analytic) by default: ``<checkpoint>.calibration-<denoiser>-<sha12>.pt``
    beside it."""
    p = Path(ckpt_path)
    return p.with_name(f"{p.name}.calibration-{denoiser}-{sha[:12]}.pt")


def denoiser_model_for(
    kind: str, surrogate, ckpt_path: str | None = None, calibration: str | None = None, option: str = "--denoiser_model"
) -> CalibratedDenoiser | None:
    """``--denoiser_model`` resolved: None for ``gaussian``; for ``calibrated`` the file ``calibration`` or, left out,
    the network calibration next to ``ckpt_path`` for this checkpoint file's sha256 (:func:`calibration_path`);
    either must have been measured on ``ckpt_path``'s file when that is given."""
    if kind not in DENOISER_MODELS:
        raise ZSGuideError(f"{option} must be one of {', '.join(DENOISER_MODELS)}, got {kind!r}")
    if kind == "gaussian":
        return None
    from ..safe_files import file_sha256

    if ckpt_path is None:
        if calibration is None:
            raise ZSGuideError(f"{option} calibrated needs --calibration (a file from 'python -m zsguide calibrate')")
        return load_calibration(calibration, surrogate)
    sha = file_sha256(ckpt_path)
    if calibration is None:
        calibration = str(calibration_path(ckpt_path, "network", sha))
        if not Path(calibration).is_file():
            raise ZSGuideError(
                f"{option} calibrated: no calibration of {ckpt_path!r} at {calibration!r}; make it "
                f"with 'python -m zsguide calibrate --ckpt_path {ckpt_path}' or pass --calibration"
            )
    return load_calibration(calibration, surrogate, sha)
