"""Hand-designed optimizers looked up by name, with their tuned hyperparameters.

Tuned values live in one versioned file, ``tuned.json`` beside this module, written by
``python -m eval.tune``. ``make_optimizer(name, task=...)`` starts from the class defaults, applies the
values tuned for that task, then the caller's overrides.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from l2l.common.registry import Registry
from l2l.optimizers.base import ZOOptimizer

TUNED_PATH = Path(__file__).with_name("tuned.json")
TUNED_FORMAT = 1

_OPTIMIZERS: Registry[type[ZOOptimizer]] = Registry("optimizer", "optimizers")


def register_optimizer(name: str) -> Callable[[type[ZOOptimizer]], type[ZOOptimizer]]:
    """Class decorator: make an optimizer constructible by ``make_optimizer(name)``."""

    def named(cls: type[ZOOptimizer]) -> None:
        cls.name = name

    return _OPTIMIZERS.decorator(name, named)


def optimizer_names() -> list[str]:
    return _OPTIMIZERS.names()


def optimizer_class(name: str) -> type[ZOOptimizer]:
    return _OPTIMIZERS[name]


@lru_cache(maxsize=4)
def _read_tuned(path: str, mtime: float) -> dict:
    data = json.loads(Path(path).read_text())
    if data.get("format") != TUNED_FORMAT:
        found = data.get("format")
        raise ValueError(f"{path} has format {found!r}; this version reads format {TUNED_FORMAT}")
    return data


def load_tuned(path: Path | None = None) -> dict:
    """The whole tuned-values file (``{"format": 1, "tasks": {task: {optimizer: record}}}``)."""
    path = TUNED_PATH if path is None else path
    if not path.exists():
        return {"format": TUNED_FORMAT, "tasks": {}}
    return _read_tuned(str(path), path.stat().st_mtime)


def is_tuned(name: str, task: str | None) -> bool:
    """Whether ``tuned.json`` records a tuning of optimizer ``name`` on ``task`` (even one with no
    parameters to set, such as SignHunter's)."""
    return task is not None and name in load_tuned()["tasks"].get(task, {})


def tuned_params(name: str, task: str | None) -> dict[str, Any]:
    """The hyperparameters tuned for optimizer ``name`` on ``task`` ({} when none were tuned)."""
    if task is None:
        return {}
    entry = load_tuned()["tasks"].get(task, {}).get(name, {})
    return dict(entry.get("params", {}))


def accepted_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``params`` that optimizer ``name`` has as parameters (e.g. ``q`` only where it has q).

    Comparisons and tuning pass shared settings such as ``q`` and ``mu`` to every method; methods without
    them (first-order references, ZOO's coordinate batches) keep their own settings.
    """
    cls = optimizer_class(name)
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    return {k: v for k, v in params.items() if k in fields}


def make_optimizer(name: str, task: str | None = None, **overrides: Any) -> ZOOptimizer:
    """A hand-designed optimizer by name.

    Args:
        name: a registered name (see :func:`optimizer_names`).
        task: a task family name whose tuned hyperparameters to use; None for the class defaults.
        **overrides: hyperparameters that win over the tuned ones (e.g. ``q=20``).
    """
    cls = optimizer_class(name)
    params = {**tuned_params(name, task), **overrides}
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    unknown = sorted(set(params) - fields)
    if unknown:
        raise TypeError(f"optimizer {name!r} has no parameter(s) {unknown}; its parameters: {sorted(fields)}")
    return cls(**params)
