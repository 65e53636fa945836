"""Task families looked up by name, and the key under which a family's tuned values are recorded."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from l2l.common.device import resolve_device
from l2l.common.registry import Registry
from l2l.tasks.base import Task, TaskFamily
from l2l.tasks.zoo.registry import parse_models

_FAMILIES: Registry[Callable[..., TaskFamily]] = Registry("task", "tasks")


def register_family(name: str) -> Callable[[Callable[..., TaskFamily]], Callable[..., TaskFamily]]:
    """Class decorator: make a :class:`TaskFamily` constructible by ``make_family(name)``."""

    return _FAMILIES.decorator(name)


def family_names() -> list[str]:
    return _FAMILIES.names()


def _factory(name: str) -> Callable[..., TaskFamily]:
    return _FAMILIES[name]


def make_family(name: str, device: str | torch.device | None = None, **kwargs) -> TaskFamily:
    """The task family registered as ``name``; ``kwargs`` go to its constructor.

    Args:
        name: a registered family name.
        device: where its instances (and their model) live; None keeps the CPU. A seed reproduces a
            run bit for bit per device only (see :mod:`l2l.common.device`).
        **kwargs: the family's own options.
    """
    family = _factory(name)(**kwargs)
    if device is not None:
        family.device = resolve_device(device)
    return family


def default_steps(name: str) -> int:
    """The default horizon (:attr:`TaskFamily.default_steps`) of the family registered as ``name``.

    Read from the class without building the family: building one can load models and data
    (``mnist_attack``), which registering environments or defaulting a config option should not pay
    for. A family registered through a factory function is built.

    Args:
        name: a registered family name (KeyError otherwise, listing them).
    """
    factory = _factory(name)
    if isinstance(factory, type) and issubclass(factory, TaskFamily):
        return int(factory.default_steps)
    return int(factory().default_steps)


def family_splits(name: str) -> tuple[str, ...]:
    """The splits that hold instances of the family ``name`` (:attr:`TaskFamily.splits`), read from the
    class without building the family: ("test",) for a test-only track."""
    factory = _factory(name)
    if isinstance(factory, type) and issubclass(factory, TaskFamily):
        return tuple(factory.splits)
    return tuple(factory().splits)


def family_zoo(name: str) -> str | None:
    """The data set whose target-model zoo (:data:`l2l.tasks.zoo.registry.ZOO`) the family ``name``
    attacks through its ``model`` option, or None for a family without one; read from the class."""
    factory = _factory(name)
    if "model" not in inspect.signature(factory).parameters:
        return None
    return getattr(factory, "dataset", None)


def family_models(name: str, models: str) -> tuple[str, list[str]]:
    """The data set of family ``name``'s zoo and the models of it that ``models`` names
    (:func:`l2l.tasks.zoo.registry.parse_models`: ``heldout``, ``surrogates`` or a comma list).

    Raises:
        ValueError: a family without a zoo, or a bad model list.
    """
    dataset = family_zoo(name)
    if dataset is None:
        raise ValueError(
            f"models={models!r}: task family {name!r} has no target-model zoo (no model option); use an "
            "MNIST or Fashion-MNIST attack family, e.g. mnist_attack_linf"
        )
    return dataset, parse_models(dataset, models)


def paper_settings(name: str) -> dict[str, dict[str, Any]]:
    """Method name -> its published parameters for the family ``name`` (:attr:`TaskFamily.paper_settings`;
    empty for most families), read from the class without building the family."""
    factory = _factory(name)
    if isinstance(factory, type) and issubclass(factory, TaskFamily):
        return dict(factory.paper_settings)
    return dict(factory().paper_settings)


def make_task(
    name: str, split: str = "test", index: int = 0, device: str | torch.device | None = None, **kwargs
) -> Task:
    """Instance ``index`` of ``split`` of the family ``name``, on ``device`` (None: the CPU)."""
    return make_family(name, device=device, **kwargs).instance(split, index)


def check_family_options(name: str, options: dict[str, Any]) -> None:
    """Refuse ``options`` that the family ``name`` does not take, before anything is built.

    Raises:
        KeyError: ``name`` is not a registered family.
        ValueError: an option the family's constructor has no parameter for (the message lists them).
    """
    params = inspect.signature(_FAMILIES[name]).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(
            f"task family {name!r} takes no option(s) {unknown}; its options: {sorted(params) or 'none'}"
        )


def tuning_key(name: str, **options: Any) -> str:
    """The ``tuned.json`` key of family ``name`` built with ``options``: ``name`` or ``name@k=v,...``.

    ``tuning_key("mnist_attack_linf")`` is ``"mnist_attack_linf"``; ``tuning_key("mnist_attack_linf",
    eps=0.3)`` is ``"mnist_attack_linf@eps=0.3"``. Options that are None or equal the family's default
    (its constructor's default, or its ``default_<option>`` attribute where the constructor resolves a
    None default itself, as the attack families' eps) are left out, so ``--eps 0.2`` and no ``--eps``
    share one key. Numbers are written as floats (``eps=2`` and ``eps=2.0`` are one key); options are
    sorted by name. ``eval.tune`` records under this key and ``eval.attack_table`` reads it.

    Args:
        name: a registered task family.
        **options: the options the family is built with (e.g. ``eps=0.3``).

    Raises:
        KeyError, ValueError: as :func:`check_family_options`.
    """
    check_family_options(name, options)
    factory, params = _FAMILIES[name], inspect.signature(_FAMILIES[name]).parameters
    parts = []
    for key in sorted(options):
        value = options[key]
        default = params[key].default
        if default is None:
            default = getattr(factory, f"default_{key}", None)
        if value is None or value == default:
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
        parts.append(f"{key}={value!r}")
    return f"{name}@{','.join(parts)}" if parts else name
