"""The option groups the evaluation CLIs share: one spelling, one help text and one check per concept.

Each group is a dataclass whose fields :func:`l2l.common.config.parse_config` turns into flags; a CLI's
config inherits the groups it uses (``class CompareConfig(ShardOptions, OutputOptions, GridOptions)``:
the last group's flags come first in ``--help``) and calls ``super().__post_init__()`` from its own
validation, so each check is written once. A CLI that needs another default re-declares the field with
:func:`default_of`, which keeps the group's help; a CLI that uses only some fields of a group declares
those the same way, so a concept never gets a second spelling (``tests/eval/test_option_spelling.py``
fails when one does). The meta-training loop's own group is ``train.learned.LoopOptions``; it spells
the shared concepts (``--device``, ``--threads``, ``--workers``, ``--wandb``, ``--out``) as these
groups do.

- :class:`DeviceOptions`: ``--device`` and ``--threads``, where and with how many CPU threads to run.
- :class:`ShardOptions`: those plus ``--workers``, the processes a sharded evaluation runs on.
- :class:`GridOptions`: the runs grid: ``--task``, ``--methods`` (the optimizers compared), ``--split``,
  ``--instances``, ``--trials``, ``--seed``.
- :class:`OutputOptions`: ``--out`` (the result file, placeholders filled in), ``--wandb`` and
  ``--wandb-project``.

:func:`pinned_threads` runs a block with ``--threads`` torch threads (results depend on the count bit
for bit).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from l2l.common.config import check_at_least, doc_field
from l2l.common.device import DEVICE_HELP, resolve_device
from l2l.common.distributed import WORKERS_DEFAULT, check_workers

#: the most trials per instance (run seeds are seed + 1000 * instance + trial)
MAX_TRIALS = 1000
WORKERS_HELP = (
    "processes to shard the runs over (torch.distributed, gloo), each with --threads threads; results "
    "equal the serial run's bit for bit, wall times aside; under torchrun leave it out"
)


def default_of(group: type, name: str, default: Any, help: str | None = None) -> Any:
    """Field ``name`` of ``group`` with another default, for a config that re-declares it.

    Args:
        group: an option group (or any dataclass) that declares the field.
        name: the field's name (its flag is ``--`` + name with ``-`` for ``_``).
        default: the value this CLI starts from.
        help: a CLI-specific help text (None: the group's, so the concept reads the same everywhere).
    """
    fields = {f.name: f for f in dataclasses.fields(group)}
    if name not in fields:
        raise KeyError(f"{group.__name__} has no field {name!r} (fields: {', '.join(fields)})")
    return doc_field(default, fields[name].metadata["help"] if help is None else help)


class OptionGroup:
    """The base of every group: the end of the ``__post_init__`` chain.

    Each group checks its own fields and calls ``super().__post_init__()``, so a config that inherits
    several groups runs every group's checks once; a dataclass after the groups in the method order
    (e.g. a learned optimizer's config mixed into a training CLI's) still gets its own check called.
    """

    def __post_init__(self) -> None:
        after = getattr(super(), "__post_init__", None)
        if after is not None:
            after()


@dataclass
class DeviceOptions(OptionGroup):
    """Where the runs happen: the torch device and the CPU thread count."""

    device: str = doc_field("cpu", DEVICE_HELP)
    threads: int = doc_field(
        1, "torch CPU threads; the same seed and thread count reproduce results bit for bit"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        resolve_device(self.device)  # refuse cuda on a machine without one, before any work
        check_at_least(self, ("threads",))


@dataclass
class ShardOptions(DeviceOptions):
    """:class:`DeviceOptions` plus the processes a sharded evaluation runs on (``eval.distributed``)."""

    workers: int = doc_field(WORKERS_DEFAULT, WORKERS_HELP)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_workers(self.workers)


@dataclass
class GridOptions(OptionGroup):
    """The runs grid: which methods, on which instances of which task family, how often, from which seed."""

    task: str = doc_field("mnist_attack", "registered task family (see l2l.family_names())")
    methods: str = doc_field(
        "zo_sgd,zo_signsgd,zo_adam",
        "comma-separated optimizers: registered names (with the values tuned for --task) and "
        "label=checkpoint entries loaded as saved (each trained one adds its <label>_untrained control)",
    )
    split: Literal["train", "val", "test"] = doc_field("test", "instance split; report on test, tune on val")
    instances: int = doc_field(20, "number of instances, the first ones of the split")
    trials: int = doc_field(1, "runs per instance, with seeds seed + 1000 * instance + trial")
    seed: int = doc_field(0, "base seed; every method gets the same per-run seeds")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least(self, ("instances", "trials"))
        if self.trials > MAX_TRIALS:
            raise ValueError(
                f"trials={self.trials} must be <= {MAX_TRIALS} (run seeds are seed + 1000 * instance + trial)"
            )


@dataclass
class LockstepOptions(OptionGroup):
    """How many instances of one method run together (``l2l.run_many``) where the method allows it."""

    vectorize: int = doc_field(
        32,
        "B > 1 runs the instances of one method and trial B at a time in lockstep (l2l.run_many: one "
        "stacked model forward per step over the runs still going) for methods that support it "
        "(l2l.runs_in_lockstep: the search attacks, NES, SPSA, ZO-SGD/signSGD/Adam); the others, and "
        "every run with 1, go one at a time. Queries and successes match the one-at-a-time runs and "
        "losses agree to float tolerance (a sign step can turn a last-bit difference into another "
        "step); with --workers a group is the shard unit, and sharded runs equal serial ones bit for bit",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least(self, ("vectorize",))


@dataclass
class OutputOptions(OptionGroup):
    """Where the result goes: the result file (the other outputs beside it) and the wandb run."""

    out: str = doc_field(
        "results/{task}_{split}.json",
        "result JSON path ({task} and {split} are filled in); the other outputs go beside it",
    )
    wandb: Literal["online", "offline", "disabled"] = doc_field(
        "offline", "wandb mode: offline needs no account or network; online uploads"
    )
    wandb_project: str = doc_field("l2l-zo", "wandb project name")

    def out_path(self, **values: str) -> Path:
        """``out`` with its placeholders filled in (:func:`fill_path`)."""
        return fill_path(self.out, self, **values)


def fill_path(template: str, config: Any, **values: str) -> Path:
    """``template`` with each ``{name}`` placeholder filled in: ``values[name]``, else ``config.name``.

    Args:
        template: an output path such as ``results/{task}_{split}.json``.
        config: the dataclass config whose fields fill the placeholders.
        values: placeholder values that are not fields (or that differ from them), e.g. ``eps``.

    Raises:
        ValueError: a placeholder that is neither given nor a field of the config.
    """
    names = {f.name for f in dataclasses.fields(config)}

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name in values:
            return str(values[name])
        if name in names:
            return str(getattr(config, name))
        raise ValueError(f"{template!r} has an unknown placeholder {{{name}}}")

    return Path(re.sub(r"\{(\w+)\}", fill, template))


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, restoring the previous count after.

    Args:
        threads: the torch CPU thread count inside the block.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
