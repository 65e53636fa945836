"""The tuned-values file, ``l2l/optimizers/tuned.json``: read, and checked against today's search spaces.

``python -m eval.tune`` writes it; ``make_optimizer(name, task=...)`` reads it. It holds only the chosen
values: one entry per (task key, method)::

    {"format": 2, "tasks": {"mnist_attack_linf": {"nes": {
        "params": {"delta": 18.75, "mu": 0.001},          # what make_optimizer applies
        "val_final_loss": 0.86, "val_queries": 1305.0,     # the winner's val score
        "tuned_on": {"date": "2026-12-07", "split": "val", "instances": 10,
                     "fingerprint": "3f0c...",             # space_fingerprint(name, mu_grid)
                     "budget": 2000, "steps": 100000, ...}}}}}  # eval.tune's other settings

The grids searched and every candidate's val score are results, not package data: ``eval.tune`` writes
them to ``docs/results/tuning/grids.jsonl``. A value whose fingerprint differs from its method's search
space today (or that has none) was chosen from another grid; reading it warns once, with the
``eval.tune`` command that refreshes it (:func:`stale_reason`, :func:`refresh_command`).
"""

from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from l2l.optimizers.core.search_spaces import space_fingerprint

#: the file shipped with the package; tests and scratch copies point TUNED_PATH elsewhere
SHIPPED_TUNED_PATH = Path(__file__).parents[1] / "tuned.json"
TUNED_PATH = SHIPPED_TUNED_PATH
TUNED_FORMAT = 2
#: the eval.tune settings a refresh repeats from the entry's record, in the command's order
REFRESH_SETTINGS = ("instances", "trials", "steps", "budget", "q", "mu", "mu_grid", "seed")


class StaleTuningWarning(UserWarning):
    """A tuned value was chosen under a search space other than its method's current one."""


@lru_cache(maxsize=4)
def _read_tuned(path: str, mtime: float) -> dict:
    data = json.loads(Path(path).read_text())
    if data.get("format") != TUNED_FORMAT:
        found = data.get("format")
        raise ValueError(f"{path} has format {found!r}; this version reads format {TUNED_FORMAT}")
    return data


def load_tuned(path: Path | None = None) -> dict:
    """The whole tuned-values file (``{"format": 2, "tasks": {task: {optimizer: entry}}}``).

    Args:
        path: the file to read (None: :data:`TUNED_PATH`); a missing file reads as no tuned values.
    """
    path = TUNED_PATH if path is None else path
    if not path.exists():
        return {"format": TUNED_FORMAT, "tasks": {}}
    return _read_tuned(str(path), path.stat().st_mtime)


def tuned_entry(name: str, task: str | None) -> dict[str, Any] | None:
    """The record of optimizer ``name`` tuned on task key ``task``, or None when it was never tuned there."""
    if task is None:
        return None
    return load_tuned()["tasks"].get(task, {}).get(name)


def is_tuned(name: str, task: str | None) -> bool:
    """Whether ``tuned.json`` records a tuning of optimizer ``name`` on ``task`` (even one with no
    parameters to set, such as SignHunter's)."""
    return tuned_entry(name, task) is not None


def stale_reason(name: str, entry: dict[str, Any]) -> str | None:
    """Why ``entry`` (a tuned.json record of ``name``) was not tuned under today's search space, or None.

    The entry's fingerprint is compared with the fingerprint of ``name``'s space today, spelled out with
    the ``--mu-grid`` the entry records, so a tuning with a custom mu grid is not flagged for it.
    """
    protocol = entry.get("tuned_on", {})
    recorded = protocol.get("fingerprint")
    if recorded is None:
        return "it records no search-space fingerprint"
    current = space_fingerprint(name, protocol.get("mu_grid"))
    if recorded != current:
        return f"it was tuned under search space {recorded}, and the space is {current} now"
    return None


def _flag(value: Any) -> str:
    return "none" if value is None else f"{value}"


def refresh_command(name: str, task: str, entry: dict[str, Any] | None = None) -> str:
    """The ``python -m eval.tune`` command that tunes ``name`` on task key ``task`` again, on val.

    Args:
        name: a registered method.
        task: a tuned.json key: a family name, or ``name@option=value,...`` (each option becomes a flag).
        entry: its current record; the settings it was tuned with (instances, budget, ...) are repeated.
    """
    family, _, options = task.partition("@")
    flags = [f"--task {family}"]
    flags += [f"--{k.replace('_', '-')} {v}" for k, v in (o.split("=", 1) for o in options.split(",") if o)]
    flags.append(f"--methods {name}")
    protocol = (entry or {}).get("tuned_on", {})
    flags += [f"--{k.replace('_', '-')} {_flag(protocol[k])}" for k in REFRESH_SETTINGS if k in protocol]
    if "stop_at_success" in protocol:
        flags.append("--stop-at-success" if protocol["stop_at_success"] else "--no-stop-at-success")
    return " ".join(["python -m eval.tune", *flags])


def tuned_params(name: str, task: str | None) -> dict[str, Any]:
    """The hyperparameters tuned for optimizer ``name`` on ``task`` ({} when none were tuned).

    Warns (:class:`StaleTuningWarning`, once per entry under Python's default filter) when they were tuned
    under a search space other than today's, naming the command that refreshes them.
    """
    entry = tuned_entry(name, task)
    if entry is None:
        return {}
    reason = stale_reason(name, entry)
    if reason is not None:
        warnings.warn(
            f"the values of {name!r} tuned for {task!r} may be stale: {reason}; refresh them on val with: "
            f"{refresh_command(name, task, entry)}",
            StaleTuningWarning,
            stacklevel=2,
        )
    return dict(entry.get("params", {}))
