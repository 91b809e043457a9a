"""Bring your own pretrained prior: ``python -m zsguide prior`` writes a prior file (a Gaussian surrogate fitted from
your images and a checked pointer to your network); every command that takes ``--ckpt_path`` reads it."""
