"""The surrogate ensemble and the transfer-start attacks (transfer_signhunter, transfer_square)."""

from __future__ import annotations

import pytest
import torch

import l2l
from l2l.optimizers.core.surrogates import SurrogateEnsemble, parse_surrogates, task_zoo
from l2l.oracle import Oracle
from l2l.tasks.zoo.registry import zoo_names

SIZES = (3, 2, 4)


@pytest.fixture(scope="module")
def linf_tasks():
    torch.set_num_threads(1)
    return l2l.make_family("mnist_attack_linf", eps=0.3, sizes=SIZES).instances("test")


def test_surrogates_are_the_zoo_surrogates_and_a_heldout_target_is_refused():
    surrogates = ("cw", "mlp", "lenet", "wide")
    assert parse_surrogates("mnist", "all") == tuple(zoo_names("mnist", "surrogate")) == surrogates
    assert parse_surrogates("fashion", "mlp, lenet") == ("mlp", "lenet")
    with pytest.raises(ValueError, match="'lenet_adv', a held-out target of the mnist zoo"):
        parse_surrogates("mnist", "mlp,lenet_adv")
    with pytest.raises(ValueError, match="empty or repeated"):
        parse_surrogates("mnist", "mlp,mlp")
    with pytest.raises(ValueError, match="'resnet', a held-out target"):
        l2l.make_optimizer("transfer_signhunter", surrogates="resnet")
    with pytest.raises(ValueError, match="pgd_steps=0 must be an int >= 1"):
        l2l.make_optimizer("transfer_square", pgd_steps=0)


def test_task_zoo_reads_the_family(linf_tasks):
    assert task_zoo(linf_tasks[0]) == "mnist"
    fashion = l2l.make_family("fashion_attack_l2", sizes=SIZES).instance("test", 0)
    assert task_zoo(fashion) == "fashion"
    assert task_zoo(l2l.make_family("quadratic").instance("test", 0)) is None


def test_pgd_lowers_the_ensemble_margin_and_stays_feasible(linf_tasks):
    ensemble = SurrogateEnsemble("mnist", "mlp,lenet")
    for task in linf_tasks:
        delta = ensemble.pgd(task.image, task.label, task.ball, task.project, steps=10, step_fraction=0.125)
        assert delta.abs().max() <= 0.3 + 1e-6 and torch.equal(task.project(delta), delta)
        images = torch.stack([task.image, task.adversarial(delta.unsqueeze(0))[0]])
        clean, attacked = ensemble.margin(images, task.label).tolist()
        assert attacked < clean - 1.0  # the summed log-prob margin fell by more than one nat


@pytest.mark.parametrize("name", ["transfer_signhunter", "transfer_square"])
def test_the_first_query_is_the_transfer_perturbation(name, linf_tasks):
    task = linf_tasks[0]
    optimizer = l2l.make_optimizer(name, surrogates="lenet", pgd_steps=5)
    state, oracle = optimizer.init(task.x0(), seed=1), Oracle(task)
    rows, _ = optimizer.propose(state, oracle)
    delta = SurrogateEnsemble("mnist", "lenet").pgd(task.image, task.label, task.ball, task.project, 5, 0.125)
    signs = torch.where(delta < 0, -1.0, 1.0)
    expected = task.project(0.3 * signs) if name == "transfer_signhunter" else delta
    assert torch.allclose(rows[0], expected) and oracle.queries == 0  # the transfer is free


def test_a_transfer_attack_needs_a_zoo():
    quadratic = l2l.make_family("quadratic").instance("test", 0)
    with pytest.raises(ValueError, match="zoo: a target-model zoo whose surrogates an attack may carry"):
        l2l.run(l2l.make_optimizer("transfer_signhunter"), quadratic, steps=1)


def test_the_attacked_surrogate_is_left_out_of_the_ensemble(linf_tasks, monkeypatch):
    seen = []
    real = SurrogateEnsemble.__init__

    def spy(self, dataset, names="all", exclude=None):
        real(self, dataset, names, exclude)
        seen.append(self.names)

    monkeypatch.setattr(SurrogateEnsemble, "__init__", spy)
    task = linf_tasks[0]  # the default target: the shipped C&W CNN, the zoo's surrogate cw
    assert task.model_name == "cw"
    l2l.run(l2l.make_optimizer("transfer_signhunter", pgd_steps=1), task, steps=1)
    assert seen == [("mlp", "lenet", "wide")]
    with pytest.raises(ValueError, match="leaves no model once the attacked 'cw' is out"):
        SurrogateEnsemble("mnist", "cw", exclude="cw")
