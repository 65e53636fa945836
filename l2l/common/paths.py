"""Where the project's shipped files live."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shipped_file(what: str, files: dict[str, str], task: str, train_command: str) -> Path:
    """The shipped ``what`` (e.g. "ZO-LSTM checkpoint") trained on ``task``, from ``files`` {task: name}.

    Every optimizer that ships trained files declares them in one shape, a ``shipped_files`` class
    attribute {task family: file name under ``checkpoints/``} (the learned optimizers,
    ``LearnedOptimizer.shipped_checkpoint``; the ZO-RL policy, ``agents.zo_rl.ZORL``), and is looked up
    here. Raises a KeyError that names the tasks that have one and the command that trains one.

    Args:
        what: what the file is, for the message.
        files: the owner's ``shipped_files``.
        task: the task family.
        train_command: the command that trains one (``--task`` is appended in the message).
    """
    if task not in files:
        raise KeyError(
            f"no {what} ships for task {task!r} (only for {', '.join(files)}); "
            f"train one with `{train_command} --task {task}`"
        )
    return checkpoints_dir() / files[task]


def checkpoints_dir() -> Path:
    """The folder of shipped weights: ``$L2L_CHECKPOINTS`` if set, else ``checkpoints/`` of the checkout."""
    return Path(os.environ.get("L2L_CHECKPOINTS", REPO_ROOT / "checkpoints"))
