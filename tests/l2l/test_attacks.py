"""``l2l.attack``: a batch of images in lockstep, per-image counts under both conventions, the already
misclassified for free, the same results as per-image runs, and clear errors on bad input."""

from __future__ import annotations

import pytest
import torch

import l2l
from l2l.attacks import queries_with_checks
from l2l.tasks.attack import AttackTask
from tests.helpers import ROOT

EPS = 0.2


@pytest.fixture(scope="module")
def batch():
    family = l2l.make_family("mnist_attack_linf", sizes=(5, 6, None))
    tasks = family.instances("val")
    images = torch.stack([t.image for t in tasks])
    labels = torch.tensor([t.label for t in tasks])
    return family.model, images, labels


@pytest.mark.slow
def test_results_equal_per_image_runs_and_do_not_depend_on_the_batch_size(batch):
    model, images, labels = batch
    result = l2l.attack(model, images, labels, method="square", eps=EPS, budget=300, seed=4)
    halves = l2l.attack(model, images, labels, method="square", eps=EPS, budget=300, seed=4, batch_size=4)
    assert torch.equal(result.queries, halves.queries) and torch.equal(result.success, halves.success)
    optimizer = l2l.make_optimizer("square")
    for i in range(len(images)):
        task = AttackTask(model, images[i], int(labels[i]), c=0.0, eps=EPS, norm="linf")
        run = l2l.run(optimizer, task, steps=300, budget=300, seed=4 + i, stop_at_success=True)
        assert bool(result.success[i]) == (run.success_step is not None)
        spent = run.success_query if run.success_step is not None else run.queries[-1]
        assert int(result.queries[i]) == spent
        assert int(result.queries_with_checks[i]) == queries_with_checks(run, optimizer)
    assert result.success.any() and result.adversarial.shape == images.shape
    assert (result.linf <= EPS + 1e-6).all()
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    fooled = model(result.adversarial[result.success]).argmax(1) != labels[result.success]
    assert fooled.all()  # the reported successes are real
    assert torch.equal(result.queries_with_checks[result.success], result.queries[result.success] + 1)


def test_already_misclassified_images_cost_nothing_and_come_back_unchanged(batch):
    model, images, labels = batch
    wrong = labels.clone()
    wrong[[1, 4]] = (labels[[1, 4]] + 1) % 10  # the model's answer is now "wrong" for these two
    result = l2l.attack(model, images, wrong, method="signhunter", eps=EPS, budget=50)
    assert result.already_misclassified.tolist() == [i in (1, 4) for i in range(len(images))]
    for i in (1, 4):
        assert result.success[i] and result.queries[i] == 0 and result.queries_with_checks[i] == 0
        assert torch.equal(result.adversarial[i], images[i]) and result.linf[i] == 0


def test_an_all_misclassified_batch_returns_at_once(batch):
    model, images, labels = batch
    result = l2l.attack(model, images, (labels + 1) % 10, budget=10)
    assert result.success.all() and result.queries.sum() == 0 and result.success_rate == 1.0


def test_a_checkpoint_path_and_an_optimizer_instance_are_methods(batch):
    model, images, labels = batch
    path = ROOT / "checkpoints" / "signhunter_prior_linf.pt"
    learned = l2l.attack(model, images[:3], labels[:3], method=path, eps=EPS, budget=100)
    instance = l2l.attack(model, images[:3], labels[:3], method=l2l.load_optimizer(path), eps=EPS, budget=100)
    assert torch.equal(learned.queries, instance.queries)


class NaNModel(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 10), float("nan"))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m, x, y: (m, x * 255, y), r"images must lie in \[0, 1\]; got values in \[0, 255\]"),
        (lambda m, x, y: (m, x, y.clone().fill_(10)), r"labels\[0\]=10 is outside the model's 10 classes"),
        (lambda m, x, y: (NaNModel(), x, y), "the model returned NaN or inf for 6 clean image"),
        (lambda m, x, y: (m, x, y[:2]), r"labels must have shape \(6,\)"),
    ],
)
def test_bad_input_is_a_clear_error(batch, change, match):
    model, images, labels = change(*batch)
    with pytest.raises(ValueError, match=match):
        l2l.attack(model, images, labels, budget=10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "nope"}, "method='nope' is neither a registered optimizer"),
        ({"norm": "l1"}, "norm='l1' must be one of"),
        ({"eps": 0}, "eps=0 must be > 0"),
        ({"budget": 0}, "budget=0 must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size=0 must be an integer >= 1"),
        ({"method": "square", "bogus": 1}, r"has no parameter\(s\) \['bogus'\]"),
    ],
)
def test_bad_options_are_clear_errors(batch, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        l2l.attack(*batch, **kwargs)
