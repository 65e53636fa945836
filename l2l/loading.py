"""Load a saved optimizer (learned or policy-based) from its file, by the format marker inside the file.

Two kinds of file:

- **torch checkpoints** (a dict saved with ``torch.save``) carry a ``format`` marker; a handler
  registered with :func:`register_format` for that marker (or for a prefix of it ending in ``/``, such
  as ``l2l.learned/``) builds the optimizer. The file's suffix plays no part.
- **other formats** (e.g. the stable-baselines3 zips of ZO-RL policies) are read by *loader plugins*:
  functions ``loader(path) -> ZOOptimizer | None`` that return None for a file that is not theirs. A
  package outside l2l declares one as a Python entry point in the group ``l2l.loaders``::

      [project.entry-points."l2l.loaders"]
      zo_rl = "agents.zo_rl:load_policy_file"

  so that l2l never imports that package by name (it would be circular: ``agents`` imports l2l).
  Code in the same process may also call :func:`register_loader`.

The installed metadata is the contract: an editable install records its entry points when it is
installed, so after ``pyproject.toml`` gains one, reinstall (``pip install -e .``; the Makefile does it
when pyproject.toml changes). l2l keeps no list of plugins and reads no pyproject.toml itself.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from l2l.optimizers.core.base import ZOOptimizer

ENTRY_POINT_GROUP = "l2l.loaders"
#: builds an optimizer from a checked torch checkpoint dict; ``path`` is for messages
FormatHandler = Callable[[dict, Path], ZOOptimizer]
#: reads a file of its own format, or returns None for a file that is not its format
Loader = Callable[[Path], "ZOOptimizer | None"]

_FORMATS: dict[str, FormatHandler] = {}
_LOADERS: dict[str, Loader] = {}


def register_format(marker: str) -> Callable[[FormatHandler], FormatHandler]:
    """Register the handler of torch checkpoints whose ``format`` is ``marker`` (``.../``: a prefix)."""

    def deco(fn: FormatHandler) -> FormatHandler:
        if marker in _FORMATS:
            raise ValueError(
                f"a handler for format {marker!r} is already registered ({_FORMATS[marker].__name__})"
            )
        _FORMATS[marker] = fn
        return fn

    return deco


def register_loader(name: str) -> Callable[[Loader], Loader]:
    """Register a loader plugin under ``name`` in this process (entry points need no call)."""

    def deco(fn: Loader) -> Loader:
        if name in _LOADERS:
            raise ValueError(f"a loader named {name!r} is already registered ({_LOADERS[name].__name__})")
        _LOADERS[name] = fn
        return fn

    return deco


def load_optimizer(path: str | os.PathLike) -> ZOOptimizer:
    """A frozen optimizer from a checkpoint file; it needs nothing but the file.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is corrupt, has an unknown format marker, or no loader recognises it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no optimizer checkpoint at {str(path)!r}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        return _load_with_plugins(path, f"{type(err).__name__}: {str(err)[:200]}")
    return _load_torch_checkpoint(path, payload)


def format_handler(marker: Any) -> FormatHandler | None:
    """The handler registered for ``marker`` (exactly, or by the longest registered prefix), or None."""
    if not isinstance(marker, str):
        return None
    if marker in _FORMATS:
        return _FORMATS[marker]
    prefixes = [p for p in _FORMATS if p.endswith("/") and marker.startswith(p)]
    return _FORMATS[max(prefixes, key=len)] if prefixes else None


def _load_torch_checkpoint(path: Path, payload: Any) -> ZOOptimizer:
    if not isinstance(payload, dict):
        raise ValueError(f"{str(path)!r} holds a {type(payload).__name__}, not an optimizer checkpoint dict")
    # no import of l2l.learned here (it imports this module: a cycle): the package l2l imports it, and
    # Python imports the package before any of its modules, so its formats are registered by now
    handler = format_handler(payload.get("format"))
    if handler is None:
        hint = " (it looks like a target-model checkpoint)" if "heldout_accuracy" in payload else ""
        raise ValueError(
            f"{str(path)!r} is not an optimizer checkpoint{hint}: its format marker is "
            f"{payload.get('format')!r} (known: {', '.join(sorted(_FORMATS))}); its keys are "
            f"{sorted(map(str, payload))[:10]}"
        )
    return handler(payload, path)


def _load_with_plugins(path: Path, torch_error: str) -> ZOOptimizer:
    loaders = loader_plugins()
    for loader in loaders.values():
        optimizer = loader(path)
        if optimizer is not None:
            return optimizer
    raise ValueError(
        f"cannot load {str(path)!r}: it is not a readable torch checkpoint (corrupt, truncated, or not "
        f"written by torch.save: {torch_error}), and there is no loader plugin for this file (tried: "
        f"{', '.join(loaders) or 'none'}); if it is a ZO-RL policy zip, reinstall the package so its "
        f"{ENTRY_POINT_GROUP} entry point is registered: pip install -e ."
    )


def loader_plugins() -> dict[str, Loader]:
    """Every loader plugin: those registered in-process, then the entry points, by name."""
    plugins = dict(_LOADERS)
    for name, target in entry_point_targets().items():
        if name not in plugins:
            plugins[name] = _resolve(target)
    return plugins


def entry_point_targets() -> dict[str, str]:
    """name -> ``module:function`` of the installed ``l2l.loaders`` entry points (module docstring)."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _resolve(target: str) -> Loader:
    module, _, attribute = target.partition(":")
    if not module or not attribute:
        raise ValueError(f"loader entry point {target!r} must read 'module:function'")
    return getattr(importlib.import_module(module), attribute)
