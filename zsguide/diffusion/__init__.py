"""Diffusion prior: the VP schedule, the score network, denoisers and the Lightning training module."""
