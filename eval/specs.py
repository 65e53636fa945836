"""Parse an optimizer list such as ``zo_sgd,zo_adam,mine=checkpoints/x.pt`` into labeled factories.

Each comma-separated item is either

- a registered name (``zo_adam``): built by ``l2l.make_optimizer(name, task=<family>, q=q[, mu=mu])``
  (q and mu only for methods that have them),
  so the values tuned for that task family apply and the caller's ``q`` (and ``mu``, when given) win;
  the label is the name;
- ``label=path``: a saved optimizer loaded by ``l2l.load_optimizer(path)`` exactly as it was saved
  (a learned optimizer keeps its own q and mu; the overrides do not apply to it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import l2l
from l2l.optimizers.base import ZOOptimizer
from l2l.optimizers.registry import accepted_params, optimizer_class

#: file endings that mark an unlabeled item as a checkpoint path rather than a mistyped name
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".zip")


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer of a comparison.

    Attributes:
        label: the name it carries in tables, plots and JSON keys (unique within a comparison).
        source: the registered name or the checkpoint path it comes from.
        factory: builds the optimizer; called once per comparison, before any run starts.
    """

    label: str
    source: str
    factory: Callable[[], ZOOptimizer]


def parse_optimizers(text: str, task: str | None, q: int, mu: float | None = None) -> list[OptimizerSpec]:
    """Parse a comma-separated optimizer list into specs, checking it before anything runs.

    Args:
        text: e.g. ``"zo_sgd,zo_adam,mine=checkpoints/x.pt"``; whitespace around items is ignored.
        task: the task family whose tuned hyperparameters the registered optimizers use (None: class
            defaults).
        q: query directions per step for the registered optimizers.
        mu: smoothing radius for the registered optimizers; None keeps the tuned (or default) value.

    Raises:
        ValueError: an empty item, an empty label or path, a duplicate label, or a bare path.
        KeyError: an unknown optimizer name (the message lists the registered ones).
    """
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ValueError(
            f"optimizer list {text!r} has an empty item; write names or label=path separated by single commas"
        )
    specs = [_parse_item(item, task, q, mu) for item in items]
    labels = [spec.label for spec in specs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(
            f"optimizer list {text!r} repeats the label(s) {duplicates}; give each entry its own label "
            "(e.g. a=ckpt1.pt,b=ckpt2.pt)"
        )
    return specs


def _parse_item(item: str, task: str | None, q: int, mu: float | None) -> OptimizerSpec:
    """One item of the list: ``name`` or ``label=path``."""
    if "=" in item:
        label, _, path = (part.strip() for part in item.partition("="))
        if not label or not path:
            raise ValueError(
                f"optimizer item {item!r} needs both a label and a path, as in mine=checkpoints/x.pt"
            )
        return OptimizerSpec(label, path, functools.partial(l2l.load_optimizer, path))
    if "/" in item or "\\" in item or item.endswith(_CHECKPOINT_SUFFIXES):
        raise ValueError(f"optimizer item {item!r} looks like a file; label it, as in mine={item}")
    optimizer_class(item)  # raises the registry's KeyError, which lists the known names
    overrides = accepted_params(item, {"q": q} if mu is None else {"q": q, "mu": mu})
    return OptimizerSpec(item, item, functools.partial(l2l.make_optimizer, item, task=task, **overrides))


def build_optimizers(specs: list[OptimizerSpec]) -> list[tuple[str, ZOOptimizer]]:
    """Call every factory (loading checkpoints, checking hyperparameters) and pair it with its label."""
    return [(spec.label, spec.factory()) for spec in specs]
