"""Binary-classification tasks: the loss, minibatches, the synthetic family and the real-data family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import dump_svmlight_file

import l2l
from l2l.oracle import Oracle
from l2l.tasks import BinaryClassificationTask
from l2l.tasks.binary import BinaryRealFamily, synthetic_data
from l2l.tasks.seeds import instance_seed


def tiny_task(batch_size: int = 3) -> BinaryClassificationTask:
    features = torch.tensor(
        [[1.0, -2.0, 0.5], [0.3, 0.1, -1.0], [-1.5, 0.7, 2.0], [0.0, 1.0, 1.0], [2.0, 0.5, -0.3]]
    )
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    return BinaryClassificationTask(features, labels, batch_size=batch_size)


def numpy_loss(task: BinaryClassificationTask, theta: np.ndarray, rows: np.ndarray | None = None) -> float:
    """Reference: mean_i (y_i - 1 / (1 + exp(-theta^T x_i)))^2 in float64."""
    x = task.features.double().numpy()
    y = task.labels.double().numpy()
    if rows is not None:
        x, y = x[rows], y[rows]
    return float(np.mean((y - 1.0 / (1.0 + np.exp(-(x @ theta)))) ** 2))


THETAS = np.array([[0.0, 0.0, 0.0], [0.5, -1.0, 2.0], [-3.0, 0.2, 0.7], [10.0, 10.0, -10.0]])


def test_loss_matches_numpy_reference():
    task = tiny_task()
    full = task.loss(torch.tensor(THETAS, dtype=torch.float32))
    batch = torch.tensor([4, 0, 2])
    sub = task.loss(torch.tensor(THETAS, dtype=torch.float32), batch)
    for k, theta in enumerate(THETAS):
        assert full[k].item() == pytest.approx(numpy_loss(task, theta), abs=1e-6)
        assert sub[k].item() == pytest.approx(numpy_loss(task, theta, batch.numpy()), abs=1e-6)
    assert full[0].item() == pytest.approx(0.25, abs=1e-7)  # sigmoid(0) = 1/2 for every row


def test_batched_rows_match_row_by_row():
    task = l2l.make_task("binary_classification", split="val", index=1)
    X = torch.randn(7, task.dim, generator=torch.Generator().manual_seed(3)) * 0.3
    batch = task.sample_batch(torch.Generator().manual_seed(0))
    for b in (None, batch):
        together = task.loss(X, b)
        assert together.shape == (7,)
        one_by_one = torch.stack([task.loss(row, b)[0] for row in X])
        torch.testing.assert_close(together, one_by_one, rtol=1e-6, atol=1e-7)


def test_autograd_matches_analytic_gradient():
    task = tiny_task()
    theta = torch.tensor(THETAS[1], dtype=torch.float64, requires_grad=True)
    task.loss(theta).sum().backward()
    x, y = task.features.double().numpy(), task.labels.double().numpy()
    s = 1.0 / (1.0 + np.exp(-(x @ THETAS[1])))
    expected = np.mean((-2.0 * (y - s) * s * (1.0 - s))[:, None] * x, axis=0)
    np.testing.assert_allclose(theta.grad.numpy(), expected, rtol=1e-6, atol=1e-9)


def test_sample_batch_is_deterministic_distinct_and_in_range():
    task = l2l.make_task("binary_classification", split="train", index=0)
    first = task.sample_batch(torch.Generator().manual_seed(11))
    again = task.sample_batch(torch.Generator().manual_seed(11))
    other = task.sample_batch(torch.Generator().manual_seed(12))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.shape == (64,)
    assert len(set(first.tolist())) == 64
    assert int(first.min()) >= 0 and int(first.max()) < task.n


def test_oracle_queries_after_one_set_batch_share_it():
    task = l2l.make_task("binary_classification", split="train", index=2)
    X = torch.randn(21, task.dim, generator=torch.Generator().manual_seed(0)) * 0.2
    g = torch.Generator().manual_seed(5)
    oracle = Oracle(task)
    oracle.set_batch(task.sample_batch(g))
    first, second = oracle(X), oracle(X)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    oracle.set_batch(task.sample_batch(g))
    assert not torch.allclose(oracle(X), first)


class BatchSpy(BinaryClassificationTask):
    """Records the batch of every minibatch evaluation (run's full-objective records pass None)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[int, torch.Tensor]] = []

    def loss(self, X: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        if batch is not None:
            self.seen.append((X.shape[0], batch.clone()))
        return super().loss(X, batch)


def test_each_run_step_evaluates_its_q_plus_1_queries_on_one_fresh_batch():
    base = l2l.make_task("binary_classification", split="train", index=3)
    spy = BatchSpy(base.features, base.labels, batch_size=base.batch_size)
    l2l.run(l2l.make_optimizer("zo_sgd", q=5, mu=1e-3), spy, steps=4, seed=0)
    assert [rows for rows, _ in spy.seen] == [6] * 4  # one call of q+1 rows per step, so one batch each
    batches = [b for _, b in spy.seen]
    assert all(len(set(b.tolist())) == spy.batch_size for b in batches)
    assert len({tuple(b.tolist()) for b in batches}) == 4  # a fresh minibatch every step


def test_synthetic_instances_reproducible_and_distinct():
    fam = l2l.make_family("binary_classification")
    a, b = fam.instance("test", 0), l2l.make_family("binary_classification").instance("test", 0)
    assert torch.equal(a.features, b.features) and torch.equal(a.labels, b.labels)
    others = [fam.instance("test", 1), fam.instance("train", 0), fam.instance("val", 0)]
    assert all(not torch.equal(a.features, o.features) for o in others)
    assert (a.n, a.dim, a.batch_size, a.family) == (2000, 100, 64, "binary_classification")
    assert [fam.split_size(s) for s in ("train", "val", "test")] == [90, 10, 10]


def test_synthetic_labels_balanced_and_separable_by_ground_truth():
    fam = l2l.make_family("binary_classification")
    for split, index in (("train", 0), ("train", 89), ("val", 3), ("test", 9)):
        task = fam.instance(split, index)
        assert 0.4 <= float(task.labels.mean()) <= 0.6
        theta_star, _, _ = synthetic_data(fam.dim, fam.n, instance_seed(fam.seed, split, index))
        assert task.accuracy(theta_star) == 1.0


def test_zo_sgd_lowers_the_full_loss():
    # measured (torch 2.13 CPU): 0.25 -> 0.0877 at seed 0; 0.080-0.088 over 5 test instances x 5 seeds
    task = l2l.make_task("binary_classification", split="test", index=0)
    opt = l2l.make_optimizer("zo_sgd", delta=10.0, mu=1e-3, q=20)
    traj = l2l.run(opt, task, steps=200, seed=0)
    assert traj.losses[0] == pytest.approx(0.25)
    assert traj.final_loss < 0.12
    assert task.accuracy(traj.x) > 0.85


def test_real_family_splits_never_share_rows():
    fam = BinaryRealFamily()  # breast_cancer: 569 distinct rows, bundled with scikit-learn
    pools = [set(fam.pools[s].tolist()) for s in ("train", "val", "test")]
    assert sum(map(len, pools)) == len(fam.labels) == 569
    assert not (pools[0] & pools[1] or pools[0] & pools[2] or pools[1] & pools[2])
    raw_rows = {}
    for split in ("train", "val", "test"):
        raw_rows[split] = set()
        for index in range(fam.split_size(split)):
            rows = fam.instance_rows(split, index)
            task = fam.instance(split, index)
            assert torch.equal(task.features, fam.features[rows]) and task.family == "binary_real"
            # hash the rows as read, before standardization: identity that no index bookkeeping can fake
            raw_rows[split] |= {fam.raw_features[r].tobytes() for r in rows.tolist()}
    assert not (raw_rows["train"] & raw_rows["val"] or raw_rows["train"] & raw_rows["test"])
    assert not raw_rows["val"] & raw_rows["test"]


def test_real_family_instances_differ_and_standardize_on_train_only():
    fam = BinaryRealFamily(sizes=(3, 2, 2))
    a, b = fam.instance_rows("train", 0), fam.instance_rows("train", 1)
    assert len(a) == round(0.8 * len(fam.pools["train"])) and not torch.equal(a, b)
    train = fam.features[fam.pools["train"]].double()
    torch.testing.assert_close(train[:, :-1].mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(train[:, :-1].std(0, unbiased=False), torch.ones(30, dtype=torch.float64))
    assert torch.all(fam.features[:, -1] == 1.0)  # the bias column


def test_svmlight_file_loads_with_right_dims(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 7))
    features[:, 3] = 2.0  # a constant column: std 0 must not divide by zero
    path = tmp_path / "toy.svm"
    dump_svmlight_file(features, np.where(features[:, 0] > 0, 1, -1), str(path))
    fam = BinaryRealFamily(dataset=str(path), batch_size=64, sizes=(2, 1, 1))
    task = fam.instance("train", 0)
    assert task.dim == 8 and fam.features.shape == (50, 8)
    assert task.n == round(0.8 * 30) and task.batch_size == task.n  # clamped to the instance's rows
    assert set(fam.labels.tolist()) == {0.0, 1.0}
    torch.testing.assert_close(fam.labels, torch.tensor(features[:, 0] > 0, dtype=torch.float32))
    assert torch.isfinite(fam.features).all() and torch.all(fam.features[:, 3] == 0)


def test_svmlight_labels_1_2_map_and_three_classes_rejected(tmp_path):
    features = np.random.default_rng(1).normal(size=(20, 3))
    two = tmp_path / "two.svm"
    dump_svmlight_file(features, np.array([1, 2] * 10), str(two))
    assert BinaryRealFamily(dataset=two).labels.tolist() == [0.0, 1.0] * 10
    three = tmp_path / "three.svm"
    dump_svmlight_file(features, np.array([0, 1, 2, 1] * 5), str(three))
    with pytest.raises(ValueError, match="3 label values"):
        BinaryRealFamily(dataset=str(three))


def test_missing_dataset_file_says_which_and_how_to_get_one(tmp_path):
    missing = tmp_path / "heart_scale"
    with pytest.raises(FileNotFoundError) as err:
        l2l.make_family("binary_real", dataset=str(missing))
    assert str(missing) in str(err.value) and "liblinear-tools" in str(err.value)


def test_bad_inputs_name_the_bad_value():
    features = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"found \[2.0\]"):
        BinaryClassificationTask(features, torch.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="batch_size=5"):
        BinaryClassificationTask(features, torch.tensor([0.0, 1.0, 0.0, 1.0]), batch_size=5)
    with pytest.raises(ValueError, match="subsample=0"):
        BinaryRealFamily(subsample=0)
