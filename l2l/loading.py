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

**References.** A command line names an optimizer as an item of a comma-separated list (``--methods``):
``name`` (a registered optimizer or a shipped checkpoint's name), ``label=path`` (a file, loaded as
saved) or ``label=path#variant`` (a variant of it, e.g. ``#untrained``; a variant may hold its own
``=``, as in ``policy.zip#lstm=zo_lstm.pt``). :func:`parse_reference` is the one parser of that grammar
(:func:`parse_references` of a whole list). What a variant means belongs to whoever reads the file: a
learned optimizer's class (``LearnedOptimizer.variants``) for torch checkpoints, and for other formats
the loader plugin, which registers its :class:`Variants` with :func:`register_variants` when its module
is imported (the entry point imports it; :func:`plugin_variants` finds the one that claims a file).

The installed metadata is the contract: an editable install records its entry points when it is
installed, so after ``pyproject.toml`` gains one, reinstall (``pip install -e .``; the Makefile does it
when pyproject.toml changes). l2l keeps no list of plugins and reads no pyproject.toml itself.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import torch

from l2l.optimizers.core.base import ZOOptimizer

ENTRY_POINT_GROUP = "l2l.loaders"
#: builds an optimizer from a checked torch checkpoint dict; ``path`` is for messages
FormatHandler = Callable[[dict, Path], ZOOptimizer]
#: reads a file of its own format, or returns None for a file that is not its format
Loader = Callable[[Path], "ZOOptimizer | None"]

#: file endings that mark an unlabeled item as a checkpoint path rather than a mistyped name
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".zip")

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


@dataclass(frozen=True)
class Reference:
    """One parsed optimizer item (module docstring).

    Attributes:
        label: the name it carries in tables (the item itself for a bare name).
        name: the bare item (a registered or shipped name), or None for ``label=path``.
        path: the file of ``label=path[#variant]``, or None for a bare name.
        variant: the text after ``#`` (``""``: the file as saved); its owner parses it.
    """

    label: str
    name: str | None = None
    path: str | None = None
    variant: str = ""

    @property
    def source(self) -> str:
        """Where the optimizer comes from, as written: the name, or ``path[#variant]``."""
        if self.path is None:
            return str(self.name)
        return f"{self.path}#{self.variant}" if self.variant else self.path


def parse_reference(item: str) -> Reference:
    """Parse one item: ``name``, ``label=path`` or ``label=path#variant`` (whitespace around it ignored).

    Args:
        item: the text of one list item.

    Raises:
        ValueError: an empty item, a label without a path (or the reverse), or a bare path (it needs a
            label, so that a mistyped name is not taken for a file).
    """
    item = item.strip()
    if not item:
        raise ValueError("an optimizer item is empty; write names or label=path separated by single commas")
    if "=" not in item.partition("#")[0]:
        if "#" in item or "/" in item or "\\" in item or item.endswith(CHECKPOINT_SUFFIXES):
            raise ValueError(f"optimizer item {item!r} looks like a file; label it, as in mine={item}")
        return Reference(label=item, name=item)
    label, _, rest = (part.strip() for part in item.partition("="))
    path, _, variant = (part.strip() for part in rest.partition("#"))
    if not label or not path:
        raise ValueError(
            f"optimizer item {item!r} needs both a label and a path, as in mine=checkpoints/x.pt"
        )
    return Reference(label=label, path=path, variant=variant)


def parse_references(text: str) -> list[Reference]:
    """Every item of a comma-separated list, parsed by :func:`parse_reference`.

    Args:
        text: e.g. ``"zo_sgd,mine=checkpoints/x.pt#untrained"``.

    Raises:
        ValueError: an empty list or item, or a malformed item.
    """
    items = text.split(",")
    if not text.strip() or any(not item.strip() for item in items):
        raise ValueError(
            f"optimizer list {text!r} has an empty item; write names or label=path separated by single commas"
        )
    return [parse_reference(item) for item in items]


class Variants(Protocol):
    """The variant grammar of a loader plugin's files (``label=path#variant``).

    Attributes:
        shipped: the bare names that stand for the plugin's shipped file of a task, each with its
            variant (e.g. ``{"zo_rl": "", "zo_rl_lstm": "lstm"}``).
    """

    shipped: Mapping[str, str]

    def claims(self, path: str) -> bool:
        """Whether ``path`` is this plugin's file (by its content; by its name when it does not exist)."""
        ...

    def shipped_path(self, task: str) -> str:
        """The plugin's shipped file for ``task`` (a KeyError names the tasks that have one)."""
        ...

    def resolve(self, ref: Reference, task: str | None) -> Callable[[], ZOOptimizer]:
        """The factory of ``ref`` (ValueError: an unknown variant); ``task`` finds shipped companions."""
        ...

    def control(self, variant: str) -> str | None:
        """The variant of ``variant``'s untrained control, or None when ``variant`` is a control."""
        ...


_VARIANTS: dict[str, Variants] = {}


def register_variants(name: str, variants: Variants) -> Variants:
    """Register the variant grammar of loader plugin ``name`` (called when the plugin's module loads).

    Args:
        name: the plugin's name (its ``l2l.loaders`` entry point).
        variants: its grammar.
    """
    _VARIANTS[name] = variants
    return variants


def plugin_variants() -> dict[str, Variants]:
    """Every registered variant grammar, after importing the loader plugins (which register them)."""
    loader_plugins()
    return dict(_VARIANTS)


def claiming_variants(path: str) -> Variants | None:
    """The grammar of the plugin whose file ``path`` is, or None."""
    return next((v for v in plugin_variants().values() if v.claims(path)), None)


def shipped_variants(name: str) -> Variants | None:
    """The grammar of the plugin that ships files under the bare name ``name``, or None."""
    return next((v for v in plugin_variants().values() if name in v.shipped), None)
