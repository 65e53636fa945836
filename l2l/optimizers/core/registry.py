"""Hand-designed optimizers looked up by name (tuned values: :mod:`l2l.optimizers.core.tuned`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from l2l.common.registry import Registry
from l2l.optimizers.core.base import ZOOptimizer

_OPTIMIZERS: Registry[type[ZOOptimizer]] = Registry("optimizer", "optimizers")


def register_optimizer(name: str) -> Callable[[type[ZOOptimizer]], type[ZOOptimizer]]:
    """Class decorator: make an optimizer constructible by ``make_optimizer(name)``."""

    def named(cls: type[ZOOptimizer]) -> None:
        cls.name = name

    return _OPTIMIZERS.decorator(name, named)


def optimizer_names() -> list[str]:
    """The registered names, sorted."""
    return _OPTIMIZERS.names()


def optimizer_class(name: str) -> type[ZOOptimizer]:
    """The class registered as ``name`` (a KeyError lists the registered names)."""
    return _OPTIMIZERS[name]


def parameter_names(name: str) -> set[str]:
    """The hyperparameters optimizer ``name`` takes: the fields of its dataclass."""
    cls = optimizer_class(name)
    return {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()


def accepted_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``params`` that optimizer ``name`` has as parameters (e.g. ``q`` only where it has q).

    Comparisons and tuning pass shared settings such as ``q`` and ``mu`` to every method; methods without
    them (first-order references, ZOO's coordinate batches) keep their own settings.
    """
    fields = parameter_names(name)
    return {k: v for k, v in params.items() if k in fields}
