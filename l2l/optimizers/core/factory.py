"""``make_optimizer``: a registered method with its tuned values and the caller's overrides."""

from __future__ import annotations

from typing import Any

from l2l.optimizers.core.base import ZOOptimizer
from l2l.optimizers.core.registry import optimizer_class, parameter_names
from l2l.optimizers.core.tuned import tuned_params


def make_optimizer(name: str, task: str | None = None, **overrides: Any) -> ZOOptimizer:
    """A hand-designed optimizer by name.

    Starts from the class defaults, applies the values tuned for ``task`` (``tuned.json``; a value tuned
    under an older search space warns), then ``overrides``.

    Args:
        name: a registered name (see :func:`l2l.optimizers.optimizer_names`).
        task: a task key whose tuned hyperparameters to use (a family name, or ``name@eps=...``); None
            for the class defaults.
        **overrides: hyperparameters that win over the tuned ones (e.g. ``q=20``).
    """
    cls = optimizer_class(name)
    params = {**tuned_params(name, task), **overrides}
    fields = parameter_names(name)
    unknown = sorted(set(params) - fields)
    if unknown:
        raise TypeError(f"optimizer {name!r} has no parameter(s) {unknown}; its parameters: {sorted(fields)}")
    return cls(**params)
