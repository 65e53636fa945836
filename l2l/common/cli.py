"""Command-line errors: a bad name or value given by the user is one line on stderr and exit status 2.

The library raises its usual exceptions (ValueError, KeyError, TypeError, FileNotFoundError,
IndexError) whoever calls it. What makes one of them the *user's* error is where it was raised: inside
a :func:`user_input` block, which wraps what only reads the command line and builds from it — parsing
and validating the config (:func:`l2l.common.config.parse_config` does it), looking up task families,
building optimizers and loading the checkpoints named on the command line. The long work (runs,
training) stays outside those blocks, so a genuine bug there keeps its traceback, even when its
exception type is one of the above.

A missing file is always the user's: every file a command reads is named on its command line or
implied by it (``--init-from``, ``--resume``'s saved state, checkpoints in ``--methods``), so a
:class:`FileNotFoundError` is reported as a command-line error wherever it is raised, marked or not
(:data:`ALWAYS_USER_ERRORS`); the CLIs need no block around every place that opens a file.

A CLI module ends with::

    if __name__ == "__main__":
        run_cli(main)

:func:`run_cli` prints ``error: <message>`` for a marked exception and exits with status 2, as
argparse does for a malformed option; anything else propagates with its traceback. Set
``L2L_TRACEBACK=1`` to see the traceback of a marked error too. ``main(argv)`` called from Python
raises the original exception, so tests and notebooks see the library's errors.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from l2l.common import distributed

#: the exception types a bad command-line name or value raises in the library
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, KeyError, TypeError, FileNotFoundError, IndexError)
#: the exception types that are the user's error wherever a command raises them (module docstring)
ALWAYS_USER_ERRORS: tuple[type[Exception], ...] = (FileNotFoundError,)
#: exit status of a command-line error (argparse's)
USAGE_STATUS = 2
_MARK = "_l2l_user_input"


@contextlib.contextmanager
def user_input() -> Iterator[None]:
    """Mark the :data:`USER_ERRORS` raised inside the block as caused by the command line.

    The exception is re-raised unchanged (same type, message and traceback); only :func:`run_cli`
    reads the mark. Wrap setup, never the long work.
    """
    try:
        yield
    except USER_ERRORS as err:
        setattr(err, _MARK, True)
        raise


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is the user's: raised inside a :func:`user_input` block, or a missing file.

    Args:
        err: any exception.
    """
    if isinstance(err, ALWAYS_USER_ERRORS):
        return True
    return isinstance(err, USER_ERRORS) and bool(getattr(err, _MARK, False))


def error_line(err: BaseException) -> str:
    """``err``'s message on one line, prefixed ``error:`` (a KeyError's message without its quotes).

    Args:
        err: the exception to report.
    """
    text = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else str(err)
    return "error: " + " ".join(str(text).split())


def run_cli(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    """Run ``main(argv)``; a user's error becomes one ``error:`` line on stderr and exit status 2.

    A torchrun rank of a multi-rank run then leaves at once (:func:`distributed.leave_after_clean_run`).

    Args:
        main: the CLI's ``main(argv)``.
        argv: the arguments (None: ``sys.argv[1:]``, as argparse reads them).
    """
    try:
        main(argv)
    except USER_ERRORS as err:
        if not is_user_error(err) or os.environ.get("L2L_TRACEBACK"):
            raise
        print(error_line(err), file=sys.stderr)
        raise SystemExit(USAGE_STATUS) from None
    distributed.leave_after_clean_run()
