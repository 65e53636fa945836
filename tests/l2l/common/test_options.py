"""The shared option groups of the evaluation CLIs (l2l.common.options)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch

from l2l.common.config import config_parser
from l2l.common.options import (
    DeviceOptions,
    GridOptions,
    OutputOptions,
    ShardOptions,
    default_of,
    fill_path,
    pinned_threads,
)


@dataclass
class Example(GridOptions, OutputOptions, ShardOptions):
    instances: int = default_of(GridOptions, "instances", 7)
    out: str = default_of(OutputOptions, "out", "results/{task}{eps}_{split}.json", "a CLI's own help")


def _help(cls: type, name: str) -> str:
    return {f.name: f for f in dataclasses.fields(cls)}[name].metadata["help"]


def test_a_redeclared_field_keeps_the_groups_help_unless_given_its_own():
    assert Example().instances == 7
    assert _help(Example, "instances") == _help(GridOptions, "instances")
    assert _help(Example, "out") == "a CLI's own help"
    with pytest.raises(KeyError, match="no field 'nope'"):
        default_of(GridOptions, "nope", 1)


def test_every_groups_check_runs_once_in_a_combined_config():
    with pytest.raises(ValueError, match="instances=0"):
        Example(instances=0)
    with pytest.raises(ValueError, match="trials=1001"):
        Example(trials=1001)
    with pytest.raises(ValueError, match="threads=0"):
        Example(threads=0)
    with pytest.raises(ValueError, match="workers"):
        Example(workers=0)


def test_the_parser_has_one_flag_per_field():
    flags = {a.option_strings[0] for a in config_parser(Example)._actions if a.option_strings}
    assert {"--task", "--methods", "--split", "--instances", "--trials", "--seed", "--out", "--wandb",
            "--wandb-project", "--device", "--threads", "--workers"} <= flags  # fmt: skip


def test_out_placeholders_are_filled_from_fields_and_values():
    config = Example(task="quadratic", split="val")
    assert str(config.out_path(eps="_eps0.3")) == "results/quadratic_eps0.3_val.json"
    with pytest.raises(ValueError, match="unknown placeholder"):
        config.out_path()  # {eps} is no field
    assert str(fill_path("a/{threads}.json", DeviceOptions(threads=3))) == "a/3.json"


def test_pinned_threads_restores_the_count():
    before = torch.get_num_threads()
    with pinned_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
