"""``python -m eval.bench --quick``: every figure is measured, written and reloadable; a tiny grid agrees."""

from __future__ import annotations

import json

import pytest

from eval import bench


@pytest.mark.slow
def test_quick_bench_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    report = bench.main(["--quick", "--compare-instances", "0", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    a, m = report["attack_overhead"], report["meta_training"]
    assert report["config"]["steps"] == bench.QUICK["steps"] and report["config"]["device"] == "cpu"
    # timings are figures to report, not to assert (a loaded machine moves them): only their presence
    assert a["ratio"] > 0 and a["square_ratio"] > 0
    assert a["breakdown"]["record"] > 0 and a["queries"] == bench.QUICK["steps"] * 21
    assert list(m["per_meta_batch"]) == ["1", "2"]  # QUICK's meta-batches
    assert all(v > 0 for stages in m["per_meta_batch"].values() for v in stages.values())
    assert set(m["two_ranks_k2_s_per_meta_iteration"]) == {"update", "query"}
    assert m["estimated_full_training_s"] > 0 and m["estimated_full_training_2_ranks_s"] > 0
    assert "workers" not in report  # --compare-instances 0 wins
    v = report["many"]  # --quick keeps the run_many benchmark, at tiny sizes
    assert v["instances"] == bench.QUICK["many_instances"] and v["same_results"] and v["speedup"] > 0
    assert v["rows"] == bench.QUICK["many_instances"] * bench.QUICK["many_steps"] * 21
    assert v["many_rows_per_s"] > 0
    b = report["batched_square"]  # the batched Square attack against its bare forwards, tiny
    assert b["instances"] == bench.QUICK["square_instances"] and b["same_results"] and b["ratio"] > 0
    assert b["rows"] >= b["instances"] and b["steps"] <= bench.QUICK["square_budget"]
    t = report["imagenet_table"]  # the ImageNet table once per image and once batched, tiny
    assert t["instances"] == bench.QUICK["imagenet_images"] and t["same_results"] and t["per_image_s"] > 0
    table = capsys.readouterr().out
    assert "attack run / bare forwards (Square)" in table and "quick" in table and "ImageNet table" in table
    assert "run_many speed-up" in table and "batched Square / bare forwards" in table


@pytest.mark.slow
def test_workers_bench_gives_the_serial_results():
    cfg = bench.BenchConfig(compare_task="quadratic", compare_instances=1, compare_steps=3)
    w = bench.bench_workers(cfg)
    assert w["runs"] == 2 and w["same_results"] and w["speedup"] > 0


def test_bad_bench_sizes_are_refused():
    with pytest.raises(ValueError, match="repeats=0 must be >= 1"):
        bench.BenchConfig(repeats=0)
    with pytest.raises(ValueError, match=r"meta_batches='1,0.5' must list integers >= 1"):
        bench.BenchConfig(meta_batches="1,0.5")
    with pytest.raises(ValueError, match="many_steps=0 must be >= 1"):
        bench.BenchConfig(many_steps=0)
    with pytest.raises(ValueError, match="square_budget=0 must be >= 1"):
        bench.BenchConfig(square_budget=0)


def test_a_given_size_wins_over_quick_even_at_the_full_size_value():
    assert bench.BenchConfig(quick=True).steps == bench.QUICK["steps"]
    assert bench.BenchConfig(quick=True, steps=bench.FULL["steps"]).steps == bench.FULL["steps"]
    full = bench.BenchConfig()
    assert (full.steps, full.meta_batches, full.unroll) == (200, "1,4,16", None)
