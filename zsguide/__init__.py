"""zsguide: zero-shot diffusion posterior sampling with spectrally designed parameters."""

__version__ = "0.1.0"
