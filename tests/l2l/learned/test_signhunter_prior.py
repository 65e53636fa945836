"""SignHunter-prior: a learned first query, then SignHunter (l2l/learned/signhunter_prior.py)."""

from __future__ import annotations

import pytest
import torch

import l2l
from l2l.learned import MetaTrainer, SignHunterPrior, SignHunterPriorConfig
from l2l.optimizers.core.search_attack import SearchAttack

SHIPPED = "checkpoints/signhunter_prior_linf.pt"


@pytest.fixture(scope="module")
def linf_val():
    return l2l.make_family("mnist_attack_linf").instances("val")


@pytest.mark.slow
def test_untrained_control_is_signhunter_one_query_later(linf_val):
    # theta = 0: the learned query is all ones, SignHunter's own start, which it then queries again
    control, hunter = SignHunterPrior(), l2l.make_optimizer("signhunter")
    for task in linf_val[:4]:
        mine, theirs = l2l.run(control, task, steps=300, seed=0), l2l.run(hunter, task, steps=300, seed=0)
        assert mine.queries[:5] == [0, 1, 2, 3, 4]  # one query per step
        if theirs.success_query == 1:
            assert mine.success_query == 1  # the same all-ones query, asked first
        else:
            assert mine.success_query == theirs.success_query + 1
            assert mine.losses[2:] == theirs.losses[1 : len(mine.losses) - 1]


def test_shipped_prior_fools_many_val_images_with_its_first_query(linf_val):
    trained = l2l.load_optimizer(SHIPPED)
    assert isinstance(trained, SignHunterPrior) and isinstance(trained, SearchAttack)
    control = trained.make_variant("untrained")
    tasks = linf_val[:20]
    first = [l2l.run(trained, t, steps=1, seed=0).success_query for t in tasks]
    base = [l2l.run(control, t, steps=1, seed=0).success_query for t in tasks]
    # measured: 10 / 20 against 1 / 20 (56% of all 100 val images at the selected iteration)
    assert sum(q == 1 for q in first) >= 6
    assert sum(q == 1 for q in base) <= 3


@pytest.mark.slow
def test_meta_training_lowers_the_clipped_margin_of_the_first_query():
    tasks = l2l.make_family("mnist_attack_linf", sizes=(20, 5, 5)).instances("train")
    trainer = MetaTrainer(SignHunterPriorConfig(meta_batch=4, seed=1), tasks)
    trainer.begin_stage("prior")

    def first_query_loss(opt: SignHunterPrior) -> float:
        return sum(float(l2l.run(opt, t, steps=1, seed=0).losses[-1]) for t in tasks) / len(tasks)

    before = first_query_loss(trainer.frozen())
    for _ in range(60):
        trainer.meta_step()
    after = first_query_loss(trainer.frozen())
    assert after < 0.8 * before, (before, after)


def test_bad_settings_and_tasks_are_named():
    with pytest.raises(ValueError, match=r"steps=3 and unroll=1 must both be 1.*--steps 1"):
        SignHunterPriorConfig(steps=3)
    with pytest.raises(ValueError, match="classes=1"):
        SignHunterPrior(classes=1)
    with pytest.raises(ValueError, match="'signhunter_prior' cannot run on QuadraticTask"):
        l2l.run(SignHunterPrior(), l2l.make_task("quadratic", split="val"), steps=2)
    wrong = SignHunterPrior(dim=100)
    with pytest.raises(ValueError, match=r"dimension 100 .* this task has dimension 784, label"):
        l2l.run(wrong, l2l.make_task("mnist_attack_linf", split="val"), steps=2)
    with pytest.raises(ValueError, match="l2 ball"):
        SignHunterPrior().instance_carry(l2l.make_task("mnist_attack_l2", split="val"))


def test_instance_carry_holds_the_label_and_radius():
    task = l2l.make_task("mnist_attack_linf", split="val", index=2, eps=0.3)
    carry = SignHunterPrior().instance_carry(task)
    assert int(carry["label"]) == task.label and float(carry["eps"]) == pytest.approx(0.3)
    step = SignHunterPrior().train_step(task.x0(), carry, task.loss, torch.Generator(), task.project)
    assert torch.equal(step.x, torch.zeros(task.dim))  # theta = 0: tanh(0) = 0, the clean image
