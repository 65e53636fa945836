"""The guard that keeps held-out target models out of meta-training and tuning.

Loading a held-out target (:func:`l2l.tasks.zoo.registry.heldout_files`) is refused by default: only
code inside :func:`heldout_targets_allowed` (test-time evaluation, e.g. ``eval.attack_table
--models heldout``) may load one, and :func:`surrogates_only` (meta-training and tuning entry points)
refuses it even there. Denying by default means a meta-training or tuning path that never heard of the
guard cannot load a held-out target either. The state is an environment variable, so worker processes
a run starts inherit it; every load checks it (``load_target_model``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from l2l.tasks.zoo.registry import heldout_files

#: the environment variable holding the access state: unset (refuse), "allow" or "deny"
ACCESS_ENV = "L2L_HELDOUT_TARGETS"


class HeldOutTargetError(RuntimeError):
    """A held-out target model was about to be loaded where only surrogates may be."""


@contextmanager
def _access(state: str) -> Iterator[None]:
    previous = os.environ.get(ACCESS_ENV)
    os.environ[ACCESS_ENV] = state
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ACCESS_ENV, None)
        else:
            os.environ[ACCESS_ENV] = previous


@contextmanager
def heldout_targets_allowed() -> Iterator[None]:
    """Within this block held-out targets load (test-time evaluation only); inside
    :func:`surrogates_only` it raises :class:`HeldOutTargetError` instead of opening."""
    if os.environ.get(ACCESS_ENV) == "deny":
        raise HeldOutTargetError("held-out targets cannot be allowed inside surrogates_only()")
    with _access("allow"):
        yield


@contextmanager
def surrogates_only() -> Iterator[None]:
    """Within this block no held-out target loads, whatever encloses it (meta-training, tuning)."""
    with _access("deny"):
        yield


def heldout_allowed() -> bool:
    """Whether a held-out target may be loaded here and now."""
    return os.environ.get(ACCESS_ENV) == "allow"


def check_target_access(path: Path) -> None:
    """Raise :class:`HeldOutTargetError` if ``path`` is a held-out target's file and loading one is not
    allowed here.

    Args:
        path: the target-model checkpoint about to be loaded.
    """
    if not heldout_allowed() and path.resolve() in heldout_files():
        raise HeldOutTargetError(
            f"{str(path)!r} is a held-out target model: it is attacked at test time only, never loaded by "
            "meta-training or tuning; evaluation code opens l2l.tasks.zoo.guard.heldout_targets_allowed()"
        )
