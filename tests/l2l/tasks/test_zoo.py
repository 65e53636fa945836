"""The target-model zoos: every entry's file and accuracy, the surrogate / held-out split, the guard that
keeps held-out targets out of meta-training and tuning, and ``model=`` on the attack families."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import l2l
from eval import tune
from l2l.common.config import parse_config
from l2l.optimizers.core import tuned as tuned_file
from l2l.tasks import target_models
from l2l.tasks.registry import tuning_key
from l2l.tasks.target_models import load_target_model, read_target_checkpoint, target_data
from l2l.tasks.zoo.architectures import ARCHITECTURES, build_architecture
from l2l.tasks.zoo.guard import HeldOutTargetError, heldout_targets_allowed, surrogates_only
from l2l.tasks.zoo.registry import ZOO, zoo_model, zoo_names
from train import learned as train_learned
from train import zo_lstm as train_zo_lstm
from train.target_model import TargetModelConfig

ENTRIES = [entry for models in ZOO.values() for entry in models.values()]
#: a re-evaluation of the held-out accuracy may differ from the recorded one by batch numerics only
ACCURACY_TOLERANCE = 0.002
#: the least clean held-out accuracy of a zoo model, by (data set, adversarially trained): adversarial
#: training trades clean accuracy away
ACCURACY_FLOOR = {
    ("mnist", False): 0.95,
    ("mnist", True): 0.9,
    ("fashion", False): 0.8,
    ("fashion", True): 0.7,
}
MAX_FILE_MB = 4.0
HELDOUT = {dataset: zoo_names(dataset, "heldout")[0] for dataset in ZOO}


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e.dataset}_{e.name}")
def test_every_zoo_model_loads_and_reaches_its_recorded_accuracy(entry):
    path = entry.path()
    if not path.is_file():
        pytest.skip(f"{path} is not trained yet: `{entry.command}`")
    assert path.stat().st_size < MAX_FILE_MB * 2**20
    ckpt = read_target_checkpoint(path, entry.dataset)
    config = ckpt["config"]
    assert config.get("arch", "cw") == entry.arch and ckpt["version"]
    assert (config.get("adversarial_eps") is not None) == ("--adversarial-eps" in entry.command)
    with heldout_targets_allowed():
        model = load_target_model(entry.dataset, str(path))
    images, labels = target_data(entry.dataset).heldout_split()
    with torch.no_grad():
        accuracy = float((model(images).argmax(dim=1) == labels).float().mean())
    assert accuracy == pytest.approx(ckpt["heldout_accuracy"], abs=ACCURACY_TOLERANCE)
    assert accuracy >= ACCURACY_FLOOR[entry.dataset, config.get("adversarial_eps") is not None]
    if config.get("adversarial_eps") is not None:
        assert 0 < ckpt["robust_accuracy"] <= ckpt["heldout_accuracy"]
    assert ckpt["train_wall_s"] > 0
    if entry.name != "cw":  # the entry's command is what trained the file (the shipped cw predates --arch)
        trained = dataclasses.asdict(parse_config(TargetModelConfig, entry.command.split()[3:]))
        assert {k: v for k, v in config.items() if k != "out"} == {
            k: v for k, v in trained.items() if k != "out"
        }


def test_every_architecture_maps_images_to_ten_logits_in_a_few_mb():
    images = torch.rand(2, 1, 28, 28)
    for name in ARCHITECTURES.names():
        model = build_architecture(name)
        assert model(images).shape == (2, 10), name
        assert sum(p.numel() for p in model.parameters()) * 4 < MAX_FILE_MB * 2**20, name


def test_each_zoo_is_split_into_surrogates_and_at_least_three_heldout_targets():
    for dataset, models in ZOO.items():
        heldout = [e for e in models.values() if e.role == "heldout"]
        surrogates = [e for e in models.values() if e.role == "surrogate"]
        assert len(heldout) >= 3 and surrogates and {e.dataset for e in models.values()} == {dataset}
        assert any("--adversarial-eps" in e.command for e in heldout)
        assert {e.arch for e in heldout} - {e.arch for e in surrogates}  # a family no surrogate shares
        assert len({e.arch for e in models.values()}) >= 6
        assert models["cw"].path() == target_data(dataset).checkpoint_path()
        assert not any("--adversarial-eps" in e.command for e in surrogates)
    with pytest.raises(ValueError, match="its models: cw, mlp"):
        zoo_model("mnist", "vgg")


def test_heldout_targets_load_only_inside_an_evaluation_scope():
    path = str(zoo_model("mnist", HELDOUT["mnist"]).path())
    with pytest.raises(HeldOutTargetError, match="held-out target"):
        l2l.make_family("mnist_attack_linf", model=HELDOUT["mnist"])
    with pytest.raises(HeldOutTargetError):
        l2l.make_family("mnist_attack_linf", checkpoint=path)  # a file path does not get around it
    with heldout_targets_allowed(), surrogates_only(), pytest.raises(HeldOutTargetError):
        load_target_model("mnist", path)  # the deny scope wins over an enclosing allow
    with surrogates_only(), pytest.raises(HeldOutTargetError, match="inside surrogates_only"):  # noqa: SIM117
        with heldout_targets_allowed():
            pass
    load_target_model("mnist", str(zoo_model("mnist", "cw").path()))  # surrogates load anywhere


@pytest.fixture
def heldout_loads(monkeypatch):
    """Every target-model file actually loaded (past the guard), and ``l2l.make_family`` forced to build
    each family on the MNIST held-out target, as a ``model=`` option reaching meta-training would."""
    loaded: list[str] = []
    real_load, real_make = target_models._load_target_model, l2l.make_family

    def spy(dataset: str, path: str):
        loaded.append(path)
        return real_load(dataset, path)

    monkeypatch.setattr(target_models, "_load_target_model", spy)
    monkeypatch.setattr(l2l, "make_family", lambda name, **kw: real_make(name, **kw, model=HELDOUT["mnist"]))
    yield loaded
    heldout = {str(e.path()) for e in ENTRIES if e.role == "heldout"}
    assert not heldout & set(loaded)


@pytest.mark.parametrize("trainer", [train_learned, train_zo_lstm], ids=["learned", "zo_lstm"])
@pytest.mark.slow
def test_meta_training_never_loads_a_heldout_target(trainer, heldout_loads, tmp_path):
    argv = ["--task", "mnist_attack_linf", "--out", str(tmp_path / "run"), "--wandb", "disabled"]
    with pytest.raises(HeldOutTargetError):
        trainer.main(argv)


@pytest.mark.slow
def test_tuning_never_loads_a_heldout_target(heldout_loads, tmp_path, monkeypatch):
    monkeypatch.setattr(tuned_file, "TUNED_PATH", tmp_path / "tuned.json")
    with pytest.raises(HeldOutTargetError):
        tune.main(["--task", "mnist_attack_linf", "--methods", "nes", "--instances", "1", "--steps", "2"])
    assert not (tmp_path / "tuned.json").exists()


def test_model_changes_the_attacked_model_and_keeps_the_images():
    default = l2l.make_family("mnist_attack_linf", eps=0.3)
    other = l2l.make_family("mnist_attack_linf", eps=0.3, model="mlp")
    assert isinstance(default.model, target_models.CWMnistCNN) and type(other.model).__name__ == "MLP"
    assert l2l.make_family("mnist_attack_linf", eps=0.3, model="cw").model is default.model
    images, labels = target_data("mnist").heldout_split()
    for split in l2l.tasks.SPLITS:  # each split keeps the default's images the model gets right
        kept, base = set(other.pools[split].tolist()), set(default.pools[split].tolist())
        assert kept <= base or split == "test"
        assert len(kept & base) >= 0.9 * len(base)
        with torch.no_grad():
            predicted = other.model(images[other.pools[split]]).argmax(1)
        assert bool((predicted == labels[other.pools[split]]).all())
    assert not set(other.pools["train"].tolist()) & set(default.pools["test"].tolist())
    task = other.instance("test", 0)
    assert task.model is other.model and task.eps == 0.3
    with pytest.raises(ValueError, match="default model only"):
        l2l.make_family("mnist_attack_linf", model="mlp", checkpoint="x.pt")


def test_tuning_keys_name_the_model_and_fashion_ball_families_exist():
    assert tuning_key("mnist_attack_linf", eps=0.3, model="cw") == "mnist_attack_linf@eps=0.3"
    assert tuning_key("mnist_attack_linf", eps=0.3, model="mlp") == "mnist_attack_linf@eps=0.3,model='mlp'"
    assert tuning_key("fashion_attack_linf", eps=0.1) == "fashion_attack_linf"
    for name, norm, eps in (("fashion_attack_linf", "linf", 0.1), ("fashion_attack_l2", "l2", 2.0)):
        family = l2l.make_family(name, sizes=(5, 5, 5))
        task = family.instance("val", 0)
        assert (task.norm, task.eps, task.c, family.dataset) == (norm, eps, 0.0, "fashion")
        assert task.image_id in set(target_data("fashion").heldout_ids().tolist())


@pytest.mark.parametrize(
    ("module", "launcher", "argv"),
    [
        ("train.learned", "distributed.launch", ["--optimizer", "zo_lmom", "--task", "quadratic"]),
        ("train.zo_lstm", "distributed.launch", ["--task", "quadratic"]),
        ("eval.tune", "launch", ["--task", "quadratic", "--methods", "zo_sgd"]),
    ],
)
def test_meta_training_and_tuning_entry_points_run_inside_the_deny_scope(module, launcher, argv, monkeypatch):
    """Even where a caller allowed held-out targets, these CLIs deny them for everything they launch."""
    import importlib
    import os

    from l2l.tasks.zoo import guard

    cli = importlib.import_module(module)
    seen = []
    owner, _, name = launcher.rpartition(".")
    target = getattr(cli, owner) if owner else cli
    monkeypatch.setattr(target, name, lambda fn, cfg, workers: seen.append(os.environ.get(guard.ACCESS_ENV)))
    with guard.heldout_targets_allowed():
        cli.main(argv)
    assert seen == ["deny"]
