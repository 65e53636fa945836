"""eval.cosine: the cosine-to-the-gradient CLI writes its JSON and plot."""

from __future__ import annotations

import json

import pytest

from eval import cosine as cosine_cli


@pytest.mark.slow
def test_cosine_cli_writes_json_and_png(tmp_path):
    out = tmp_path / "cos.json"
    result = cosine_cli.main([
        "--task", "quadratic", "--methods", "zo_gs,guided_es", "--instances", "1", "--trials", "1",
        "--steps", "6", "--q", "3", "--budget", "none", "--out", str(out),
    ])  # fmt: skip
    assert out.is_file() and out.with_suffix(".png").is_file()
    assert json.loads(out.read_text())["results"].keys() == {"zo_gs", "guided_es"}
    assert len(result["results"]["zo_gs"]["queries"]) == 6 and result["results"]["zo_gs"]["queries"][0] == 4
