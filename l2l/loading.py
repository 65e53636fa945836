"""Load a saved optimizer (learned or policy-based) from its file, by the file's format."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

from l2l.optimizers.base import ZOOptimizer

_LOADERS: dict[str, Callable[[Path], ZOOptimizer]] = {}
#: loaders that live outside l2l, imported on first use: ``agents`` imports stable-baselines3 and l2l
#: itself, so importing it eagerly would be circular and slow down every ``import l2l``
_LAZY_LOADERS = {".zip": "agents"}


def register_loader(suffix: str) -> Callable[[Callable[[Path], ZOOptimizer]], Callable[[Path], ZOOptimizer]]:
    """Register a loader for files ending in ``suffix`` (e.g. ``.pt``)."""

    def deco(fn: Callable[[Path], ZOOptimizer]) -> Callable[[Path], ZOOptimizer]:
        if suffix in _LOADERS:
            raise ValueError(
                f"a loader for {suffix!r} files is already registered ({_LOADERS[suffix].__name__})"
            )
        _LOADERS[suffix] = fn
        return fn

    return deco


def load_optimizer(path: str | os.PathLike) -> ZOOptimizer:
    """A frozen optimizer from a checkpoint file; it needs nothing but the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no optimizer checkpoint at {str(path)!r}")
    if path.suffix not in _LOADERS and path.suffix in _LAZY_LOADERS:
        importlib.import_module(_LAZY_LOADERS[path.suffix])  # registers its loader
    if path.suffix not in _LOADERS:
        known = ", ".join(sorted(_LOADERS)) or "none yet"
        raise ValueError(f"cannot load {str(path)!r}: no loader for {path.suffix!r} files (known: {known})")
    return _LOADERS[path.suffix](path)
