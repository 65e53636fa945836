"""One spelling per concept across every command line (``python -m train.*`` and ``python -m eval.*``).

Each CLI's parser is built without running the CLI: its ``main`` is called with ``parse_config``
replaced by a stub that records the config class and stops, and the parser is then built from that
class by :func:`l2l.common.config.config_parser`. The tests fail when two CLIs spell one concept
differently (a table of known synonyms), when one flag is a switch in one CLI and takes a value in
another (bench's old boolean ``--json`` against the path ``--json`` of the others), or when a
destination name maps to two flags.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
from collections import defaultdict
from pathlib import Path

import pytest

import eval as eval_package
import train as train_package
from l2l.common.config import config_parser

#: spellings that name one concept; a project uses at most one of each group (the first)
SYNONYMS = (
    ("--methods", "--optimizers", "--optimizer-list", "--algorithms"),
    ("--out", "--json", "--output", "--out-json", "--result", "--save"),
    ("--threads", "--num-threads", "--n-threads", "--torch-threads"),
    ("--workers", "--nproc", "--processes", "--ranks", "--num-workers"),
    ("--device", "--devices", "--cuda"),
    ("--instances", "--n-instances", "--num-instances"),
    ("--trials", "--n-trials", "--runs-per-instance", "--repeats-per-instance"),
    ("--budget", "--query-budget", "--max-queries"),
    ("--seed", "--random-seed"),
    ("--task", "--family", "--task-family"),
    ("--q", "--num-directions", "--n-directions", "--queries-per-step"),
    ("--wandb", "--wandb-mode"),
    ("--init-from", "--init", "--from-checkpoint", "--warm-start-from"),
)


class _Stop(Exception):
    """Raised by the parse_config stub once it has the config class."""


def cli_modules() -> list[str]:
    """Every ``train.*`` and ``eval.*`` module that runs as a command (it calls ``run_cli(main)``)."""
    names = []
    for package in (train_package, eval_package):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            source = Path(importlib.util.find_spec(info.name).origin).read_text()
            if "run_cli(main)" in source:
                names.append(info.name)
    return sorted(names)


def cli_parser(name: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser of module ``name``'s command line, built from the class its ``main`` parses into."""
    module = importlib.import_module(name)
    seen: dict = {}

    def stub(cls, argv=None, description=None, epilog=None):
        seen.update(cls=cls, description=description, epilog=epilog)
        raise _Stop

    monkeypatch.setattr(module, "parse_config", stub)
    with pytest.raises(_Stop):
        module.main([])
    return config_parser(seen["cls"], seen["description"], seen["epilog"])


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return {name: cli_parser(name, monkeypatch) for name in cli_modules()}


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_cli_is_found(parsers):
    for name in ("eval.compare", "eval.attack_table", "eval.order_attack", "eval.cosine", "eval.tune",
                 "eval.bench", "eval.policy_bound", "eval.val_curves", "train.learned", "train.zo_lstm",
                 "train.ddpg_policy"):  # fmt: skip
        assert name in parsers


def test_one_spelling_per_concept(parsers):
    used = defaultdict(set)
    for name, parser in parsers.items():
        for action in options(parser):
            for flag in action.option_strings:
                used[flag].add(name)
    clashes = []
    for group in SYNONYMS:
        spellings = {flag: sorted(used[flag]) for flag in group if flag in used}
        if len(spellings) > 1 or (spellings and group[0] not in spellings):
            clashes.append(f"{group[0]} is spelled {spellings}")
    assert not clashes, "; ".join(clashes)


def test_a_flag_is_a_switch_everywhere_or_nowhere(parsers):
    kinds = defaultdict(dict)
    for name, parser in parsers.items():
        for action in options(parser):
            switch = isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0
            kinds[action.option_strings[0]][name] = "switch" if switch else "value"
    mixed = {flag: by_cli for flag, by_cli in kinds.items() if len(set(by_cli.values())) > 1}
    assert not mixed


def test_a_destination_has_one_flag(parsers):
    flags = defaultdict(set)
    for parser in parsers.values():
        for action in options(parser):
            flags[action.dest].add(action.option_strings[0])
    assert {dest: sorted(f) for dest, f in flags.items() if len(f) > 1} == {}


def test_the_tests_can_fail():
    """A second spelling or a switch of a value's name would be caught by the checks above."""
    bad = argparse.ArgumentParser()
    bad.add_argument("--json", action="store_true")
    good = argparse.ArgumentParser()
    good.add_argument("--out")
    good.add_argument("--optimizers")
    with pytest.raises(AssertionError):
        test_one_spelling_per_concept({"a": bad, "b": good})
    with pytest.raises(AssertionError):
        value = argparse.ArgumentParser()
        value.add_argument("--json")
        test_a_flag_is_a_switch_everywhere_or_nowhere({"a": bad, "b": value})
