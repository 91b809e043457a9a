"""``python -m zsguide analyze`` and ``python -m zsguide tune``: the spectral engine (:mod:`zsguide.spectral`) from
the command line.

command   the parsers, ``run_analyze`` (closed-form criteria, heuristic against designed, analysis.json, figures)
          and ``run_tune`` (one designed params.json)
figures   analyze's figures
"""

from .command import run_analyze, run_tune

__all__ = ["run_analyze", "run_tune"]
