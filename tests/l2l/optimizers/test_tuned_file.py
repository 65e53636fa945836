"""tuned.json ships the chosen values alone, each stamped with its search space; stale values warn."""

from __future__ import annotations

import importlib
import json
import pkgutil
import warnings

import pytest

import l2l
import l2l.optimizers
from eval import tune
from l2l.optimizers.core import search_spaces
from l2l.optimizers.core import tuned as tuned_file
from l2l.optimizers.core.search_spaces import grid, refine, space_fingerprint

PROTOCOL = {"instances": 10, "trials": 1, "steps": 100000, "budget": 2000, "q": None, "mu": None,
            "mu_grid": search_spaces.DEFAULT_MU_GRID, "seed": 0, "stop_at_success": True,
            "split": "val", "date": "2026-12-07"}  # fmt: skip


@pytest.fixture
def tuned_path(tmp_path, monkeypatch):
    path = tmp_path / "tuned.json"
    monkeypatch.setattr(tuned_file, "TUNED_PATH", path)
    return path


def write(path, key: str, name: str, fingerprint: str | None) -> None:
    on = {**PROTOCOL, **({} if fingerprint is None else {"fingerprint": fingerprint})}
    entry = {"params": {"delta": 7.0}, "tuned_on": on}
    path.write_text(json.dumps({"format": tuned_file.TUNED_FORMAT, "tasks": {key: {name: entry}}}))


def test_shipped_file_has_no_grids_and_stamps_every_entry():
    data = json.loads(tuned_file.SHIPPED_TUNED_PATH.read_text())
    assert data["format"] == tuned_file.TUNED_FORMAT
    entries = [(key, name, e) for key, methods in data["tasks"].items() for name, e in methods.items()]
    assert len(entries) >= 40
    for key, name, entry in entries:
        assert set(entry) <= {"params", "val_final_loss", "val_queries", "tuned_on"}, (key, name)
        on = entry["tuned_on"]
        assert on["split"] == "val" and on["instances"] >= 1, (key, name)
        assert len(on["date"]) == 10, (key, name)
        assert len(on["fingerprint"]) == search_spaces.FINGERPRINT_DIGITS, (key, name)


def test_shipped_grids_hold_each_entrys_search_and_its_winner():
    data = tuned_file.load_tuned(tuned_file.SHIPPED_TUNED_PATH)
    grids = tune.read_grids(tune.GRIDS_PATH)
    assert set(grids) == {(key, name) for key, methods in data["tasks"].items() for name in methods}
    for (key, name), row in grids.items():
        entry = data["tasks"][key][name]
        assert row["tuned_on"] == entry["tuned_on"], (key, name)
        best = min(row["grid"], key=lambda r: (r["val_final_loss"], r.get("val_queries", 0)))
        assert best["val_final_loss"] == entry["val_final_loss"], (key, name)


def test_a_value_tuned_under_another_space_warns_with_the_refresh_command(tuned_path):
    key = "mnist_attack_linf@eps=0.3"
    write(tuned_path, key, "nes", "0123456789ab")
    with pytest.warns(tuned_file.StaleTuningWarning) as caught:
        assert l2l.make_optimizer("nes", task=key).delta == 7.0  # still applied: a warning, not an error
    message = str(caught[0].message)
    assert f"search space 0123456789ab, and the space is {space_fingerprint('nes')} now" in message
    assert message.endswith(
        "python -m eval.tune --task mnist_attack_linf --eps 0.3 --methods nes --instances 10 --trials 1 "
        "--steps 100000 --budget 2000 --q none --mu none --mu-grid 1e-4,3e-4,1e-3,3e-3,1e-2 --seed 0 "
        "--stop-at-success"
    )
    write(tuned_path, key, "nes", None)  # a value recorded before fingerprints
    with pytest.warns(tuned_file.StaleTuningWarning, match="records no search-space fingerprint"):
        tuned_file.tuned_params("nes", key)


def test_a_value_tuned_under_todays_space_reads_silently(tuned_path):
    write(tuned_path, "mnist_attack_linf", "nes", space_fingerprint("nes"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert l2l.make_optimizer("nes", task="mnist_attack_linf").delta == 7.0
        assert l2l.make_optimizer("nes", task="other").delta == l2l.make_optimizer("nes").delta


def test_the_fingerprint_follows_the_space_and_only_the_space(monkeypatch):
    before = space_fingerprint("nes")
    assert before == space_fingerprint("nes", "1e-3")  # NES's space has no mu_grid stage
    assert space_fingerprint("zo_sgd") != space_fingerprint("zo_sgd", "1e-3")  # ZO-SGD's has
    monkeypatch.setitem(search_spaces.SEARCH_SPACES, "nes", [grid("delta", (6.15, 15.0)), refine("delta")])
    assert space_fingerprint("nes") != before
    monkeypatch.setattr(search_spaces, "LINEAR_FACTORS", (0.5,))  # refine() reads it when a space is built
    assert refine("delta").rows() == [(1.0,), (0.5,)]


def test_white_box_references_are_apart_and_helpers_register_nothing():
    for name in l2l.optimizer_names():
        cls = l2l.optimizers.optimizer_class(name)
        in_white_box = cls.__module__.startswith("l2l.optimizers.white_box.")
        assert in_white_box == cls.white_box, (name, cls.__module__)
        assert not cls.__module__.startswith("l2l.optimizers.core."), (name, cls.__module__)
    registered = {l2l.optimizers.optimizer_class(n).__module__ for n in l2l.optimizer_names()}
    for info in pkgutil.iter_modules(l2l.optimizers.__path__, "l2l.optimizers."):
        if not info.ispkg:  # every top-level module is a registered method
            assert info.name in registered, info.name
    core = importlib.import_module("l2l.optimizers.core")
    assert not {m.name for m in pkgutil.iter_modules(core.__path__, "l2l.optimizers.core.")} & registered


def test_every_shipped_value_was_tuned_under_todays_search_space():
    data = tuned_file.load_tuned(tuned_file.SHIPPED_TUNED_PATH)
    stale = [
        tuned_file.refresh_command(name, key, entry)
        for key, methods in data["tasks"].items()
        for name, entry in methods.items()
        if tuned_file.stale_reason(name, entry) is not None
    ]
    assert not stale, "retune on val (a search space changed):\n" + "\n".join(stale)
