"""``--device``: cpu explicit or default gives the same runs; cuda without a GPU is a clear error."""

from __future__ import annotations

import pytest
import torch

import l2l
from eval import compare
from l2l.common.cli import USAGE_STATUS, run_cli
from l2l.common.device import generator_on, module_device, resolve_device
from l2l.learned import ZOLSTM
from l2l.learned.checkpoint import save_learned
from train import zo_lstm

NO_CUDA = "no CUDA device here; use --device cpu"


@pytest.fixture
def no_cuda(monkeypatch):
    """Make this machine report no GPU, whatever it has, so the error path is what runs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cuda_without_a_gpu_is_refused_with_the_fix(no_cuda):
    with pytest.raises(ValueError, match=NO_CUDA):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'; use one of cpu, cuda"):
        resolve_device("tpu")
    assert resolve_device(None) == resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("cli", [compare.main, zo_lstm.main])
def test_cli_device_cuda_is_one_error_line_and_status_2(no_cuda, cli, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(cli, ["--device", "cuda", "--task", "quadratic", "--wandb", "disabled"])
    assert info.value.code == USAGE_STATUS
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and NO_CUDA in err[0]


def test_explicit_cpu_gives_the_default_trajectory_bit_for_bit():
    default = l2l.make_family("quadratic").instance("test", 0)
    explicit = l2l.make_family("quadratic", device="cpu").instance("test", 0)
    assert explicit.device == torch.device("cpu") and explicit.x0().device.type == "cpu"
    opt = l2l.make_optimizer("zo_adam", task="quadratic", q=5)
    a, b = l2l.run(opt, default, steps=15, seed=3), l2l.run(opt, explicit, steps=15, seed=3)
    assert a.losses == b.losses and torch.equal(a.x, b.x)


def test_compare_records_the_device(tmp_path):
    argv = ["--task", "quadratic", "--methods", "zo_sgd", "--instances", "1", "--trials", "1"]
    argv += ["--steps", "3", "--q", "2", "--device", "cpu", "--wandb", "disabled"]
    result = compare.compare(compare.parse_config(compare.CompareConfig, argv), progress=False)
    assert result["device"] == "cpu" and len(result["per_run"]) == 1


def test_the_run_generator_lives_on_the_iterate_device():
    x0 = torch.zeros(4)
    state = l2l.make_optimizer("zo_sgd", q=2).init(x0, seed=5)
    assert state.rng.device == x0.device
    # the same seed on the same device is the same stream: what makes a run reproducible per device
    draw = torch.randn(3, generator=state.rng, device=state.rng.device)
    assert torch.equal(draw, torch.randn(3, generator=generator_on("cpu", 5)))


def test_a_family_device_moves_every_instance_tensor():
    family = l2l.make_family("quadratic", dim=3)
    family.device = torch.device("meta")  # a second device every machine has (shapes, no values)
    task = family.instance("train", 0)
    assert task.device.type == "meta"
    assert task.A.device.type == task.b.device.type == task.x0().device.type == "meta"
    assert task.to("meta") is task


def test_a_checkpoint_is_loaded_onto_the_cpu_and_runs_the_same(tmp_path, monkeypatch):
    trained = ZOLSTM(q=3, hidden=4)
    path = save_learned(tmp_path / "opt.pt", trained, train_config={"seed": 0}, val={})
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = l2l.load_optimizer(path)
    assert seen and all(m == "cpu" for m in seen)  # a GPU-saved file loads on a CPU-only machine
    task = l2l.make_task("quadratic", split="test", index=0, dim=5)
    a, b = l2l.run(trained, task, steps=8, seed=1), l2l.run(loaded, task, steps=8, seed=1)
    assert a.losses == b.losses
    assert all(module_device(m).type == "cpu" for m in loaded.modules().values())
