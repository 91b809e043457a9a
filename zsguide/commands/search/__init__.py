"""``python -m zsguide search``: a network-in-the-loop search of one sampler's parameters (zsguide/search/)."""

from .command import run_search

__all__ = ["run_search"]
