"""train.target_model's zoo options: architectures, more Fashion-MNIST images (never the held-out pool),
PGD adversarial training and the checkpoints they write."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from l2l.common.paths import checkpoints_dir
from l2l.tasks import fashion_data, target_models
from l2l.tasks.target_models import load_target_model, read_target_checkpoint
from l2l.tasks.zoo.guard import heldout_targets_allowed
from l2l.tasks.zoo.registry import ZOO
from train import target_model


def test_zoo_options_pick_the_zoo_file_and_bad_values_are_refused():
    cfg = target_model.TargetModelConfig(arch="resnet", dataset="fashion", adversarial_eps=0.1)
    assert cfg.out == str(checkpoints_dir() / "zoo" / "fashion_resnet_adv.pt") and cfg.min_accuracy == 0.0
    assert target_model.TargetModelConfig(arch="mlp").out == str(checkpoints_dir() / "zoo" / "mnist_mlp.pt")
    for entry in (e for models in ZOO.values() for e in models.values()):  # each command writes its file
        argv = entry.command.split()[3:]
        assert target_model.parse_config(target_model.TargetModelConfig, argv).out == str(entry.path())
    for bad, match in (
        ({"arch": "vgg"}, "arch='vgg' must be one of cw, lenet"),
        ({"train_images": 4001}, "train_images=4001 must lie in 1..4000"),
        ({"dataset": "fashion", "train_images": 59001}, r"1\.\.59000"),
        ({"adversarial_eps": 0.0}, "adversarial_eps=0.0 must lie in"),
        ({"pgd_steps": 0}, "pgd_steps=0"),
    ):
        with pytest.raises(ValueError, match=match):
            target_model.TargetModelConfig(**bad)


@pytest.mark.slow
def test_more_fashion_training_images_never_include_the_heldout_pool():
    rows = fashion_data.model_train_rows(20000)
    heldout = set(fashion_data.heldout_ids().tolist())
    assert len(set(rows.tolist())) == 20000 and not heldout & set(rows.tolist())
    assert np.array_equal(rows[:4000], fashion_data.classifier_splits()["model_train"][2].numpy())
    images, labels = fashion_data.model_train_split(4500)
    train_images, train_labels = fashion_data.load_fashion_mnist("train")
    assert torch.equal(images, train_images[rows[:4500]]) and torch.equal(labels, train_labels[rows[:4500]])


def test_pgd_stays_in_the_ball_and_the_box_and_raises_the_loss():
    model = target_models.CWMnistCNN()
    images, labels = torch.rand(8, 1, 28, 28), torch.arange(8)
    adversarial = target_model.pgd_linf(model, images, labels, 0.1, 5, torch.Generator().manual_seed(0))
    assert (adversarial - images).abs().max() <= 0.1 + 1e-6
    assert 0 <= adversarial.min() <= adversarial.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(adversarial), labels) > F.cross_entropy(model(images), labels)


@pytest.mark.slow
def test_adversarial_training_of_a_zoo_architecture_writes_a_checkpoint_that_reloads(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    tiny = (torch.rand(48, 1, 28, 28, generator=g), torch.arange(48) % 10)
    fake = dataclasses.replace(
        target_models.TARGET_DATA["mnist"], model_train_split=lambda n=48: (tiny[0][:n], tiny[1][:n]),
        heldout_split=lambda: tiny, max_train_images=48,
    )  # fmt: skip
    monkeypatch.setitem(target_models.TARGET_DATA, "mnist", fake)
    out = tmp_path / "lenet_adv.pt"
    argv = ["--arch", "lenet", "--adversarial-eps", "0.3", "--pgd-steps", "2", "--pgd-eval-steps", "3"]
    argv += ["--epochs", "2", "--train-images", "32", "--threads", "1", "--out", str(out)]
    ckpt = target_model.main(argv)
    saved = read_target_checkpoint(out, "mnist")
    assert saved["config"]["arch"] == "lenet" and saved["config"]["train_images"] == 32
    assert saved["robust_accuracy"] == ckpt["robust_accuracy"] <= saved["heldout_accuracy"]
    assert saved["train_wall_s"] > 0 and saved["version"]
    with heldout_targets_allowed():  # not needed for a file outside the zoo, and harmless
        model = load_target_model("mnist", str(out))
    assert type(model).__name__ == "LeNet"
    with torch.no_grad():
        accuracy = float((model(tiny[0]).argmax(1) == tiny[1]).float().mean())
    assert accuracy == pytest.approx(saved["heldout_accuracy"])
