"""Dataclass configs as command lines: every field becomes a documented ``--flag``.

A field documents itself with ``field(default=..., metadata={"help": "..."})``. Supported types:
``int``, ``float``, ``str``, ``bool`` (``--flag`` / ``--no-flag``), ``X | None`` (``none`` on the
command line), and ``Literal[...]`` (choices). A malformed option prints one ``error:`` line and exits
with status 2; so does a value the config's validation refuses, under :func:`l2l.common.cli.run_cli`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any, NoReturn, TypeVar

from l2l.common.cli import USAGE_STATUS, user_input

T = TypeVar("T")
DEFAULT = "(default: %(default)s)"


def doc_field(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field that carries its ``--help`` text."""
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``(T, True)`` for a hint ``T | None`` (or ``Optional[T]``), else ``(tp, False)``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _converter(tp: Any, optional: bool):
    def convert(text: str):
        if optional and text.lower() == "none":
            return None
        return tp(text)

    convert.__name__ = getattr(tp, "__name__", "value")
    return convert


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--kebab-name`` option per field of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "").replace("%", "%%")  # argparse formats help with %
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        tp, optional = unwrap_optional(hints[f.name])
        if tp is bool:
            parser.add_argument(
                flag, default=default, action=argparse.BooleanOptionalAction, help=f"{help_text} {DEFAULT}"
            )
        elif typing.get_origin(tp) is typing.Literal:
            choices = list(typing.get_args(tp))
            parser.add_argument(flag, default=default, choices=choices, help=f"{help_text} {DEFAULT}")
        else:
            parser.add_argument(
                flag, default=default, type=_converter(tp, optional), help=f"{help_text} {DEFAULT}"
            )


def _program_name() -> str | None:
    """``python -m package.module`` when run that way, so ``--help`` shows the command to type."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return f"python -m {spec.name}" if spec is not None and spec.name else None


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one ``error:`` line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_STATUS, f"error: {message} (see {self.prog} --help)\n")


def config_parser(
    cls: type, description: str | None = None, epilog: str | None = None
) -> argparse.ArgumentParser:
    """The command-line parser of the dataclass ``cls``: one ``--flag`` per field.

    Args:
        cls: the config dataclass.
        description: the ``--help`` description (default: the class docstring).
        epilog: shown as written after the options; documents what the fields cannot, such as the
            options of each registered plugin.
    """
    parser = OneLineErrorParser(
        prog=_program_name(),
        description=description or (cls.__doc__ or "").strip(),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter if epilog else argparse.HelpFormatter,
    )
    add_dataclass_arguments(parser, cls)
    return parser


def parse_config(
    cls: type[T], argv: list[str] | None = None, description: str | None = None, epilog: str | None = None
) -> T:
    """Parse ``argv`` into an instance of the dataclass ``cls`` (``--help`` lists every field).

    The config's own validation (``__post_init__``) runs inside :func:`l2l.common.cli.user_input`, so
    the values it refuses are reported as command-line errors by ``run_cli``.

    Args:
        cls: the config dataclass.
        argv: the arguments (None: ``sys.argv[1:]``).
        description: the ``--help`` description (default: the class docstring).
        epilog: see :func:`config_parser`.
    """
    namespace = config_parser(cls, description, epilog).parse_args(argv)
    with user_input():
        return cls(**vars(namespace))


def parse_float_list(text: str, name: str) -> list[float]:
    """The comma-separated numbers of option ``name`` (``"0.5,1, 2"`` -> [0.5, 1.0, 2.0]; ``""`` -> [])."""
    try:
        return [float(item) for item in text.split(",") if item.strip()]
    except ValueError as err:
        raise ValueError(f"{name}={text!r} must be comma-separated numbers, e.g. '0.5,1,2'") from err


def check_at_least(config: Any, names: Sequence[str], low: int = 1) -> None:
    """Raise a ValueError naming the first field of ``names`` whose value is below ``low``.

    Args:
        config: the config object (any object with those attributes).
        names: the fields to check.
        low: the smallest allowed value.
    """
    for name in names:
        if getattr(config, name) < low:
            raise ValueError(f"{name}={getattr(config, name)} must be >= {low}")
