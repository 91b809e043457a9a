"""A resumable Optuna study over a :class:`~zsguide.search.space.SearchSpace`: ask a point, evaluate its schedule,
tell the value, within a budget of trials and of network calls.

The optimiser is Optuna's TPE (multivariate, ``n_startup_trials`` random points first), the Bayesian search the
field's sweeps run (InverseBench; docs/search.md). Every trial's sampler is seeded by ``(seed, the number of trials
finished so far)``, so the study's sequence of points is a function of the seed and the values alone: a study
stopped after ``k`` trials and resumed proposes exactly what the uninterrupted one would have, and the best of the
first ``k`` trials of a 30-trial study is the result of a ``k``-trial study.

Resuming: with a storage (an SQLite file, ``storage``), the study is reopened by name and its settings (space,
sampler, task, validation images, metric: ``identity``) must be those it was made with. A trial left running by a
killed process is marked failed with ``interrupted`` and not counted: its point is proposed again (the same seed, the
same finished trials), so no trial is lost or run twice. A trial whose sampler diverged is a finished failure: it
counts against the budget (its network calls were spent) and is never the best.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ZSGuideError
from ..samplers.base import ParamSchedule
from .space import SearchSpace

STARTUP_TRIALS = (
    5  # random points before TPE models the values (Optuna's default 10 would make a 10-trial search random)
)
TrialOutcome = dict[str, Any]  # objective.combine's: value, summary, metrics, network_calls, vjps


class TrialFailed(ZSGuideError):
    """A trial whose sampler diverged (or gave NaN): it failed, and spent ``spent`` (network calls, VJPs)."""

    def __init__(self, message: str, spent: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.spent = dict(spent or {})


@dataclass
class TrialRecord:
    """One finished trial: its point, value (None when it failed), metrics and cost."""

    number: int
    point: dict[str, float]
    value: float | None
    summary: dict[str, float] = field(default_factory=dict)
    network_calls: int = 0
    vjps: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class SearchResult:
    """A finished (or budget-stopped) study: its trials in order, and the best within the first ``k`` of them."""

    space: SearchSpace
    direction: str
    trials: list[TrialRecord]
    stopped_by: str  # trials, network_calls

    def best(self, within: int | None = None) -> TrialRecord:
        """The best successful trial among the first ``within`` (default all); ties go to the earlier trial."""
        pool = [t for t in self.trials[: within or len(self.trials)] if t.value is not None]
        if not pool:
            raise ZSGuideError("every trial of the search failed (its sampler diverged): nothing to write")
        sign = 1.0 if self.direction == "maximize" else -1.0
        return max(pool, key=lambda t: (sign * float(t.value or 0.0), -t.number))

    def spent(self, within: int | None = None) -> dict[str, float]:
        """Network calls, VJPs and seconds of the first ``within`` trials."""
        pool = self.trials[: within or len(self.trials)]
        return {
            "trials": len(pool),
            "network_calls": sum(t.network_calls for t in pool),
            "vjps": sum(t.vjps for t in pool),
            "seconds": sum(t.seconds for t in pool),
        }

    def params(self, within: int | None = None, provenance: dict | None = None) -> ParamSchedule:
        """The best schedule among the first ``within`` trials, its provenance the search's (``provenance`` added):
        source ``searched`` (the peers' space) or ``searched_design``, the space, the budget spent, the best value."""
        best = self.best(within)
        params = self.space.schedule(best.point)
        params.provenance = {
            "source": "searched" if self.space.name == "peers" else "searched_design",
            "space": self.space.describe(),
            "best_trial": best.number,
            "best_value": best.value,
            "best_summary": best.summary,
            "spent": self.spent(within),
            **(provenance or {}),
        }
        return params


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ZSGuideError("the search needs Optuna: pip install -e '.[search]' (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _sampler(optuna, seed: int, finished: int, startup: int):
    return optuna.samplers.TPESampler(
        seed=(int(seed) * 1_000_003 + finished) % 2**32,
        n_startup_trials=startup,
        multivariate=True,
        constant_liar=False,
    )


def _record(trial) -> TrialRecord:
    attrs = trial.user_attrs
    return TrialRecord(
        trial.number,
        dict(trial.params),
        None if trial.values is None else float(trial.values[0]),
        dict(attrs.get("summary", {})),
        int(attrs.get("network_calls", 0)),
        int(attrs.get("vjps", 0)),
        float(attrs.get("seconds", 0.0)),
        attrs.get("error"),
    )


def _counted(trial) -> bool:
    return trial.state.is_finished() and not trial.user_attrs.get("interrupted", False)


def run_study(
    space: SearchSpace,
    evaluate: Callable[[ParamSchedule], TrialOutcome],
    *,
    trials: int,
    direction: str = "maximize",
    network_calls: int | None = None,
    storage: str | Path | None = None,
    identity: dict | None = None,
    seed: int = 0,
    startup_trials: int = STARTUP_TRIALS,
    on_trial: Callable[[TrialRecord, int], None] | None = None,
) -> SearchResult:
    """Run (or resume) the study of ``space`` until it holds ``trials`` finished trials, or the next trial would take
    the network calls past ``network_calls``. ``evaluate(schedule)`` returns a trial's outcome
    (:func:`zsguide.search.objective.combine`) or raises :class:`TrialFailed` for a failed trial. ``storage``: an
    SQLite file to keep the study in (None: in memory); ``identity``: the settings a resumed study must match.
    ``on_trial(record, finished)`` is called after each trial (progress)."""
    if trials < 1:
        raise ZSGuideError(f"--trials must be >= 1, got {trials}")
    if network_calls is not None and network_calls < 1:
        raise ZSGuideError(f"--network_calls must be >= 1 (or none), got {network_calls}")
    optuna = _optuna()
    from optuna.trial import TrialState

    url = None if storage is None else f"sqlite:///{Path(storage).resolve()}"
    identity = json.loads(json.dumps({"space": space.describe(), **(identity or {})}, sort_keys=True))
    study = optuna.create_study(storage=url, study_name="zsguide-search", direction=direction, load_if_exists=True)
    known = study.user_attrs.get("identity")
    if known is None:
        study.set_user_attr("identity", identity)
    elif known != identity:
        changed = sorted(k for k in set(known) | set(identity) if known.get(k) != identity.get(k))
        raise ZSGuideError(
            f"the study in {str(storage)!r} was made with other settings ({', '.join(changed)} differ); give another "
            f"--output or delete it"
        )
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)  # a killed process's trial: not counted
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    distributions = {d.name: optuna.distributions.FloatDistribution(d.low, d.high, log=d.log) for d in space.dimensions}
    done = [t for t in study.get_trials(deepcopy=False) if _counted(t)]
    stopped_by = "trials"
    while len(done) < trials:
        spent = sum(int(t.user_attrs.get("network_calls", 0)) for t in done)
        per_trial = max((int(t.user_attrs.get("network_calls", 0)) for t in done), default=0)
        if network_calls is not None and done and spent + per_trial > network_calls:
            stopped_by = "network_calls"
            break
        study.sampler = _sampler(optuna, seed, len(done), startup_trials)
        start = space.start()
        if not done and start is not None:
            study.enqueue_trial(start, skip_if_exists=False)
        trial = study.ask(distributions)
        schedule = space.schedule(dict(trial.params))
        t0 = time.perf_counter()
        try:
            outcome = evaluate(schedule)
        except TrialFailed as exc:
            for key in ("network_calls", "vjps"):
                trial.set_user_attr(key, int(exc.spent.get(key, 0)))
            trial.set_user_attr("error", str(exc))
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            study.tell(trial, state=TrialState.FAIL)
        else:
            for key in ("network_calls", "vjps"):
                trial.set_user_attr(key, int(outcome[key]))
            trial.set_user_attr("summary", outcome["summary"])
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            study.tell(trial, outcome["value"])
        done = [t for t in study.get_trials(deepcopy=False) if _counted(t)]
        if on_trial is not None:
            on_trial(_record(done[-1]), len(done))
    return SearchResult(space, direction, [_record(t) for t in done], stopped_by)
