"""How a ZO-LSTM part is picked by its config value and built from the optimizer's options."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def choose(option: str, value: str, choices: Mapping[str, T]) -> T:
    """The entry of ``choices`` named by option ``option``'s ``value``; a ValueError names the choices.

    Args:
        option: the config option's name (for the message, e.g. ``directions``).
        value: the option's value, a key of ``choices``.
        choices: a registry, config value -> part class or factory.
    """
    if value not in choices:
        raise ValueError(f"{option}={value!r} must be one of {', '.join(choices)}")
    return choices[value]


def build_part(cls: type[T], options: Any) -> T:
    """``cls`` (a dataclass part) with each of its fields read from the same-named option of ``options``.

    A part declares the options it uses as its fields, named as in the ZO-LSTM's config, so building it
    needs no per-part wiring; the part's own ``__post_init__`` checks them.

    Args:
        cls: a dataclass whose fields are all options of ``options``.
        options: any object with those attributes (a :class:`~l2l.learned.zo_lstm.ZOLSTM`, say).
    """
    return cls(**{f.name: getattr(options, f.name) for f in dataclasses.fields(cls)})  # type: ignore[call-arg, arg-type]
