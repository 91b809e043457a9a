"""Calibration of a denoiser against the Gaussian surrogate: its linear response and residual per time and frequency.

response   the estimates (gain, residual power, per frequency and per ring, jackknife standard errors)
command    ``python -m zsguide calibrate``: the measurement on held-out images, on 1..N devices
"""
