"""Synthetic stationary Gaussian fields: the exact testbed, where the Gaussian surrogate is the truth.

In the network's [-1, 1] space, ``x = mean + Q^T F^H (sqrt(lambda) F w)`` with white ``w``, the fixed colour
transform ``Q`` of :mod:`zsguide.surrogate` and the power law

    lambda_k = a / (f0 + |f_k|)^slope,   a chosen so that mean_k lambda_k = amplitude^2,

so ``amplitude`` is the per-pixel standard deviation in network units. Image ``i`` of a split comes from its own
generator seeded by (seed, split, i). Items are returned in [0, 1] pixel units (``(x + 1) / 2``) and are NOT clipped:
clipping would break the Gaussianity that the closed forms rely on.
"""

from __future__ import annotations

import numpy as np
import torch

from ..seeding import image_generator
from ..surrogate import colour_transform, power_law_spectrum
from .common import ImageDataset


def gaussian_field_spectrum(channels: int, size: int, amplitude: float, slope: float, f0: float) -> torch.Tensor:
    """The true spectrum (C, H, W) of the synthetic fields, normalised to mean ``amplitude**2``."""
    lam = power_law_spectrum(channels, size, size, 1.0, slope, f0)
    return lam * (amplitude**2 / lam.mean())


class GaussianFieldDataset(ImageDataset):
    def __init__(
        self,
        length: int,
        channels: int,
        size: int,
        amplitude: float,
        slope: float,
        f0: float,
        mean: float,
        seed: int,
        split: str,
    ) -> None:
        self.length, self.seed, self.split = length, seed, split
        self.mean = mean
        self.Q = colour_transform(channels)
        self.spectrum = gaussian_field_spectrum(channels, size, amplitude, slope, f0)
        self._amplitude, self._Q = self.spectrum.sqrt().numpy(), self.Q.numpy()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        gen = image_generator(self.seed, index, f"gaussian/{self.split}")
        w = torch.randn(self.spectrum.shape, generator=gen, dtype=torch.float64).numpy()
        # numpy's FFT: per-item torch calls cost milliseconds of dispatch on two busy cores
        u = np.fft.ifft2(self._amplitude * np.fft.fft2(w, norm="ortho"), norm="ortho").real
        x = np.einsum("dc,dhw->chw", self._Q, u) + self.mean  # Q^T u per pixel
        return {"image": torch.from_numpy((x + 1) / 2).float(), "index": index}
