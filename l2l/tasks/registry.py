"""Task families looked up by name."""

from __future__ import annotations

from collections.abc import Callable

from l2l.tasks.base import Task, TaskFamily

_FAMILIES: dict[str, Callable[..., TaskFamily]] = {}


def register_family(name: str) -> Callable[[Callable[..., TaskFamily]], Callable[..., TaskFamily]]:
    """Class decorator: make a :class:`TaskFamily` constructible by ``make_family(name)``."""

    def deco(factory: Callable[..., TaskFamily]) -> Callable[..., TaskFamily]:
        if name in _FAMILIES:
            raise ValueError(f"task family {name!r} is already registered")
        _FAMILIES[name] = factory
        return factory

    return deco


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def _factory(name: str) -> Callable[..., TaskFamily]:
    if name not in _FAMILIES:
        raise KeyError(f"unknown task {name!r}; registered tasks: {', '.join(family_names())}")
    return _FAMILIES[name]


def make_family(name: str, **kwargs) -> TaskFamily:
    """The task family registered as ``name``; ``kwargs`` go to its constructor."""
    return _factory(name)(**kwargs)


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


def make_task(name: str, split: str = "test", index: int = 0, **kwargs) -> Task:
    """Instance ``index`` of ``split`` of the family ``name``."""
    return make_family(name, **kwargs).instance(split, index)
