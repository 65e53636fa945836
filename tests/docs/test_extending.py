"""The worked examples of docs/extending.md run as written (each ``python`` block is one program)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

import l2l
from l2l.learned import protocol as learned_registry
from l2l.optimizers.core import registry as optimizer_registry
from l2l.tasks import registry as family_registry
from tests.helpers import ROOT

EXTENDING = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def python_blocks(path: Path) -> list[tuple[str, str]]:
    """(section heading, code) of every fenced ``python`` block in the markdown file at ``path``."""
    text = path.read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.MULTILINE)
        blocks.append((headings[-1] if headings else "intro", match.group(1)))
    return blocks


BLOCKS = python_blocks(EXTENDING)


def test_extending_has_the_three_worked_examples():
    headings = [heading for heading, _ in BLOCKS]
    assert headings == ["A hand-designed optimizer", "A task family", "A learned optimizer"]


@pytest.fixture
def clean_registries(monkeypatch):
    """Registrations made by an example vanish after its test, so no other test sees them."""
    monkeypatch.setattr(
        optimizer_registry._OPTIMIZERS, "entries", dict(optimizer_registry._OPTIMIZERS.entries)
    )
    monkeypatch.setattr(family_registry._FAMILIES, "entries", dict(family_registry._FAMILIES.entries))
    monkeypatch.setattr(learned_registry._LEARNED, "entries", dict(learned_registry._LEARNED.entries))


@pytest.mark.parametrize(("heading", "code"), BLOCKS, ids=[heading for heading, _ in BLOCKS])
def test_example_runs(heading, code, clean_registries, monkeypatch):
    # a real (temporary) module, as a reader's file would be; dont_inherit keeps this file's
    # ``from __future__`` flags out of the example
    module = types.ModuleType("docs_extending_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    program = compile(code, f"{EXTENDING.name}: {heading}", "exec", dont_inherit=True)
    exec(program, module.__dict__)


def test_examples_leave_no_registration_behind():
    """Runs after the examples: what they registered is gone (the fixture restored the registries)."""
    assert "zo_heavy_ball" not in l2l.optimizer_names() and "rosenbrock" not in l2l.family_names()
    assert "zo_lsgd" not in learned_registry.learned_names()
