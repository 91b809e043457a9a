"""Network-in-the-loop hyperparameter search of a sampler's parameters (issue 26; docs/search.md): the field's
practice, Optuna's TPE on a few validation images, over the peers' published ranges (``peers``) or around the
spectral design (``design``); ``python -m zsguide search`` is a shell over :func:`search`."""

from .objective import METRICS, Objective, Validation, validation_draw, validation_images
from .runner import DistributedShards, LocalShards, SearchSettings, provenance, search, search_space
from .space import SPACES, DesignSpace, Dimension, PeersSpace, SearchSpace
from .study import STARTUP_TRIALS, SearchResult, TrialRecord, run_study

__all__ = [
    "METRICS",
    "SPACES",
    "STARTUP_TRIALS",
    "DesignSpace",
    "Dimension",
    "DistributedShards",
    "LocalShards",
    "Objective",
    "PeersSpace",
    "SearchResult",
    "SearchSettings",
    "SearchSpace",
    "TrialRecord",
    "Validation",
    "provenance",
    "run_study",
    "search",
    "search_space",
    "validation_draw",
    "validation_images",
]
