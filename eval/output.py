"""The tail every result-writing evaluation CLI shares: launch the ranks, run, write, print, log to wandb.

A CLI's ``main`` parses its config and calls :func:`launch_and_write` with two module-level functions:
``run(config) -> result`` (every rank runs it; the grid is sharded inside) and
``write(result, config) -> Written`` (rank 0 alone: it writes the files and says what to print and
how to log the run to wandb). The tail prints the text, the paths written and the wandb run folder
with the command that uploads an offline run; it returns the result on every rank.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from eval.distributed import is_main, launch

C = TypeVar("C")
#: logs a result as one wandb run: ``(mode, project, run config) -> its local folder`` (None: disabled)
WandbLog = Callable[[str, str, dict[str, Any]], "Path | None"]


@dataclass(frozen=True)
class Written:
    """What rank 0 wrote for a result.

    Attributes:
        text: printed first (the table).
        paths: the files written, the result JSON first (the wandb config records it as ``out``).
        log: logs the result to wandb once the files exist, or None for a CLI that logs nothing.
    """

    text: str
    paths: Sequence[Path]
    log: WandbLog | None = None


def launch_and_write(run: Callable[[C], dict], write: Callable[[dict, C], Written], config: C) -> dict:
    """Run ``run(config)`` on ``config.workers`` ranks (1 without the field), then rank 0's tail.

    Args:
        run: the per-rank work; a module-level function (the spawned ranks receive it pickled).
        write: rank 0's writer (module-level too).
        config: the parsed config; ``wandb`` and ``wandb_project`` are read when ``write`` gives a log.
    """
    return launch(functools.partial(_rank_part, run, write), config, getattr(config, "workers", 1))


def _rank_part(run: Callable[[C], dict], write: Callable[[dict, C], Written], config: C) -> dict:
    """One rank's part: every rank runs, rank 0 alone writes, prints and logs."""
    result = run(config)
    if not is_main():
        return result
    written = write(result, config)
    print(written.text)
    print("wrote " + ", ".join(str(path) for path in written.paths))
    if written.log is not None:
        mode = config.wandb  # type: ignore[attr-defined]
        record = {**dataclasses.asdict(config), "out": str(written.paths[0])}  # type: ignore[call-overload]
        run_dir = written.log(mode, config.wandb_project, record)  # type: ignore[attr-defined]
        if run_dir is not None:
            upload = f" (upload later with: wandb sync {run_dir})" if mode == "offline" else ""
            print(f"wandb run: {run_dir}{upload}")
    return result
