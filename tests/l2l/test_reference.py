"""The one parser of optimizer references (l2l.loading.parse_reference) and the plugins' variant grammars."""

from __future__ import annotations

import pytest

from l2l.loading import Reference, claiming_variants, parse_reference, parse_references, shipped_variants


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("zo_adam", Reference("zo_adam", name="zo_adam")),
        (" zo_adam ", Reference("zo_adam", name="zo_adam")),
        ("mine=ckpt/x.pt", Reference("mine", path="ckpt/x.pt")),
        ("mine = ckpt/x.pt # untrained", Reference("mine", path="ckpt/x.pt", variant="untrained")),
        ("p=pol.zip#lstm=ckpt/z.pt", Reference("p", path="pol.zip", variant="lstm=ckpt/z.pt")),
    ],
)
def test_items_parse(item, expected):
    assert parse_reference(item) == expected


def test_source_reads_as_written():
    assert parse_reference("p=pol.zip#lstm=z.pt").source == "pol.zip#lstm=z.pt"
    assert parse_reference("m=x.pt").source == "x.pt"
    assert parse_reference("zo_sgd").source == "zo_sgd"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zo_sgd,,zo_adam", "empty item"),
        ("", "empty item"),
        ("=x.pt", "needs both a label and a path"),
        ("mine=", "needs both a label and a path"),
        ("checkpoints/x.pt", "looks like a file"),
        ("x.zip#untrained", "looks like a file"),
    ],
)
def test_malformed_lists_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_references(text)


def test_the_policy_plugin_registers_its_variants(tmp_path):
    """The SB3 loader plugin (an entry point l2l never names) owns zips and the shipped zo_rl names."""
    plugin = claiming_variants(str(tmp_path / "not_there_yet.zip"))
    assert plugin is not None and plugin is shipped_variants("zo_rl")
    assert claiming_variants(str(tmp_path / "x.pt")) is None
    assert plugin.control("") == "untrained" and plugin.control("lstm=z.pt") == "lstm_untrained=z.pt"
    assert plugin.control("untrained") is None
    with pytest.raises(ValueError, match="unknown ZO-RL variant"):
        plugin.resolve(Reference("p", path="p.zip", variant="nope"), task=None)
