"""The order attack of papers/004: data, ranking model, tau_S, the task family, methods and table CLI."""

from __future__ import annotations

import gzip
import itertools
import json

import numpy as np
import pytest
import torch

import l2l
from eval import order_attack
from l2l.oracle import Oracle
from l2l.tasks import SPLITS, NormBall, fashion_data
from l2l.tasks.order_attack import OrderAttackFamily, OrderAttackTask, ranks_in, tau_s
from l2l.tasks.ranking_models import FashionEmbeddingCNN, embed_all, fashion_ranking_path, recall_at_1
from train.ranking_model import sample_triplets, triplet_loss

D = 784


@pytest.fixture(scope="module")
def tiny_database():
    """An untrained embedding CNN and 60 smooth random images: a database that builds in milliseconds."""
    torch.manual_seed(0)
    model = FashionEmbeddingCNN(embed_dim=8).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    images = torch.nn.functional.avg_pool2d(torch.rand(60, 1, 32, 32), 5, stride=1)
    return model, images, embed_all(model, images)


@pytest.fixture(scope="module")
def tiny_family(tiny_database):
    return OrderAttackFamily(k=5, N=None, eps=8, sizes=(6, 4, 6), database=tiny_database)


def kendall(a: list[int], b: list[int]) -> float:
    """Kendall's tau between two rankings of the same items, by its definition."""
    pairs = list(itertools.combinations(range(len(a)), 2))
    return sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs) / len(pairs)


def test_tau_s_matches_a_hand_worked_example_of_alg_1():
    perm = torch.tensor([2, 0, 1])  # wanted: c2, then c0, then c1
    ranks = torch.tensor([[1, 2, 0], [0, 1, 2], [0, -1, 1], [-1, -1, -1], [0, 2, 1]])
    # [1,2,0] is the wanted order; [0,1,2]: pair (1,0) concordant, (2,0) and (2,1) discordant;
    # [0,-1,1]: c1 out of range (two pairs -1), (2,0) discordant; [0,2,1]: (1,0) +1, (2,0) -1, (2,1) +1
    assert tau_s(ranks, perm).tolist() == pytest.approx([1.0, -1 / 3, -1.0, -1.0, 1 / 3])
    with pytest.raises(ValueError, match="perm has shape"):
        tau_s(ranks, torch.tensor([0, 1]))


def test_tau_s_is_kendalls_tau_when_every_candidate_is_returned():
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        perm, ranks = torch.randperm(6, generator=g), torch.randperm(40, generator=g)[:6]
        target = torch.empty_like(perm)
        target[perm] = torch.arange(6)
        assert float(tau_s(ranks[None], perm)[0]) == pytest.approx(kendall(target.tolist(), ranks.tolist()))


def test_oracle_returns_minus_tau_s_from_the_top_n_ids_one_query_per_row(tiny_database):
    images = tiny_database[1]
    for N in (None, 12, 5):
        task = OrderAttackFamily(k=5, N=N, eps=16, sizes=(6, 4, 6), database=tiny_database).instance("val", 1)
        X = task.project(torch.randn(7, D, generator=torch.Generator().manual_seed(2)))
        oracle = Oracle(task)
        values = oracle(X)
        assert oracle.queries == 7
        returned = task.retrieve(X)
        assert returned.shape == (7, len(images) - 1 if N is None else N)
        assert (returned != task.query_id).all()  # the query's own entry is never returned
        ranks = ranks_in(returned, task.candidates)
        assert torch.equal(values, -tau_s(ranks, task.perm))
        if N is None:
            target = torch.empty_like(task.perm)
            target[task.perm] = torch.arange(5)
            expected = [-kendall(target.tolist(), row) for row in task.candidate_ranks(X).tolist()]
            assert values.tolist() == pytest.approx(expected)


def test_clean_query_ranks_its_candidates_first(tiny_family):
    task = tiny_family.instance("test", 0)
    ranks = task.candidate_ranks(task.x0()[None])[0]
    assert ranks.tolist() == [0, 1, 2, 3, 4]
    assert task.metrics(task.x0())["mean_rank"] == 2.0  # papers/004 Table 3, "None" at k = 5


def test_surrogate_is_what_white_box_access_differentiates(tiny_family):
    task = tiny_family.instance("train", 2)
    x = task.project(0.02 * torch.randn(D, generator=torch.Generator().manual_seed(3)))
    oracle = Oracle(task)
    value, grad = oracle.value_and_grad(x)
    assert value == pytest.approx(float(task.differentiable_loss(x[None])[0]), rel=1e-5)
    assert float(grad.abs().sum()) > 0 and oracle.queries == 1
    with pytest.raises(RuntimeError):  # the black-box loss itself carries no gradient
        torch.autograd.grad(task.loss(x[None].requires_grad_(True)).sum(), x)


def test_splits_are_disjoint_and_options_are_checked(tiny_database, tiny_family):
    ids = {s: {tiny_family.instance(s, i).query_id for i in range(tiny_family.split_size(s))} for s in SPLITS}
    assert sum(map(len, ids.values())) == 16
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    with pytest.raises(ValueError, match="N=3 must be None"):
        OrderAttackFamily(k=5, N=3, database=tiny_database)
    with pytest.raises(ValueError, match="eps=0"):
        OrderAttackFamily(eps=0, database=tiny_database)


def test_perturbation_stays_in_the_ball_and_the_image_box(tiny_family):
    task = tiny_family.instance("val", 0)
    assert task.ball == NormBall("linf", 8 / 255) and task.image_shape == (1, 28, 28)
    x = task.project(torch.randn(D))
    adv = task.image.flatten() + x
    assert x.abs().max() <= 8 / 255 + 1e-7 and adv.min() >= -1e-7 and adv.max() <= 1 + 1e-7


@pytest.mark.parametrize(
    ("name", "first", "later"),
    [("rand", 1, 1), ("beta", 51, 50), ("pso", 41, 40), ("nes", 50, 50), ("spsa", 50, 50)],
)
def test_each_method_spends_what_it_announces_and_keeps_the_iterate_feasible(tiny_family, name, first, later):
    task = tiny_family.instance("val", 2)
    opt = l2l.make_optimizer(name, **order_attack.paper_settings(name, 8, D))
    seen = []
    traj = l2l.run(opt, task, steps=4, budget=1000, seed=0, callback=lambda s, o, t: seen.append(s.x.clone()))
    assert np.diff(traj.queries).tolist() == [first] + [later] * 3  # l2l.run also checks each announcement
    assert all(torch.equal(task.project(x), x) for x in seen)
    if name in ("rand", "beta", "pso"):  # the iterate is the best sample seen: never worse
        assert traj.losses == sorted(traj.losses, reverse=True)


def test_pso_personal_bests_are_copies_not_the_particles(tiny_family):
    task = tiny_family.instance("val", 3)
    opt = l2l.make_optimizer("pso", population_size=6)
    state = opt.init(task.x0(), seed=0)
    oracle = Oracle(task)
    for _ in range(3):
        state = opt.step(state, oracle)
    assert state.slots["p"].data_ptr() != state.slots["y"].data_ptr()
    p_loss = oracle(state.slots["p"])
    assert torch.equal(p_loss, state.slots["p_loss"])  # each personal best still scores what it scored


def test_run_stops_once_tau_s_reaches_one(tiny_database, tiny_family):
    model, _, emb = tiny_database
    task = tiny_family.instance("val", 0)
    solved = OrderAttackTask(model, emb, task.query_id, task.image, k=5, N=None, eps=4, perm=torch.arange(5))
    traj = l2l.run(l2l.make_optimizer("rand"), solved, steps=50, seed=0, stop_at_success=True)
    assert traj.steps == 0 and traj.losses == [-1.0] and traj.success_step == 0


def test_missing_data_file_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("L2L_FASHION_MNIST", str(tmp_path))
    fashion_data.load_fashion_mnist.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
            fashion_data.load_fashion_mnist("test")
        pixels = np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8)
        header = np.array([0x803, 2, 28, 28], dtype=">u4").tobytes()
        (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + pixels.tobytes()))
        labels = np.array([0x801, 2], dtype=">u4").tobytes() + bytes([7, 3])
        (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
        images, y = fashion_data.load_fashion_mnist("test")
        assert images.shape == (2, 1, 28, 28) and images.dtype == torch.float32 and y.tolist() == [7, 3]
        assert float(images[0, 0, 0, 1]) == pytest.approx(1 / 255) and float(images.max()) <= 1.0
    finally:
        fashion_data.load_fashion_mnist.cache_clear()


def test_triplets_and_recall_at_1():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    trip = sample_triplets(labels, torch.Generator().manual_seed(0))
    assert sorted(trip[:, 0].tolist()) == list(range(8))
    assert (labels[trip[:, 0]] == labels[trip[:, 1]]).all() and (trip[:, 0] != trip[:, 1]).all()
    assert (labels[trip[:, 0]] != labels[trip[:, 2]]).all()
    points = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    emb = torch.nn.functional.normalize(points, dim=1)
    # leave-one-out: items 0 and 1 find each other (both label 0: hits), 2 and 3 too (labels 0, 1: misses)
    assert recall_at_1(emb, torch.tensor([0, 0, 0, 1])) == 0.5
    model = FashionEmbeddingCNN(embed_dim=4)
    loss = triplet_loss(model, torch.rand(8, 1, 28, 28), trip, margin=0.2)
    loss.backward()
    assert loss.item() >= 0 and model.embed.weight.grad is not None


def test_paper_settings_and_visible_ranges():
    nes = order_attack.paper_settings("nes", 4, D)
    assert nes == {"q": 25, "delta": pytest.approx(2 * D / 255), "mu": pytest.approx(8 / 255)}
    assert order_attack.paper_settings("spsa", 16, D)["mu"] == pytest.approx(2 / 255)
    assert order_attack.parse_visible("inf,50,k", 5) == [None, 50, 5]
    with pytest.raises(ValueError, match="N item 'x'"):
        order_attack.parse_visible("inf,x", 5)


@pytest.mark.skipif(not fashion_ranking_path().is_file(), reason="needs checkpoints/fashion_ranking.pt")
@pytest.mark.slow
def test_table_cli_on_the_shipped_model(tmp_path):
    out = tmp_path / "oa.json"
    args = ["--methods", "rand,nes,fo_pgd,lstm=checkpoints/zo_lstm_mnist.pt", "--k", "5", "--N", "inf",
            "--eps", "4", "--budget", "100",
            "--split", "val", "--instances", "2", "--pgd-steps", "3", "--no-progress",
            "--out", str(out)]  # fmt: skip
    order_attack.main(args)
    result = json.loads(out.read_text())
    # paper settings for the registered methods; a learned checkpoint runs beside them with its control
    assert set(result["results"]) == {"rand", "nes", "fo_pgd", "lstm", "lstm_untrained"}
    assert result["results"]["nes"]["config"]["q"] == 25
    for res in result["results"].values():
        assert -1 <= res["tau_s_mean"] <= 1 and res["runs"] == 2 and res["queries_mean"] <= 100
        assert res["tau_s_curve"] == sorted(res["tau_s_curve"])  # best seen never drops
    assert result["results"]["fo_pgd"]["queries_mean"] <= 3
    assert "| rand |" in out.with_suffix(".md").read_text()
    assert list(result["results"]["rand"]["tau_s_at_budget"]) == ["100"]  # budgets above --budget are dropped
    assert (tmp_path / "oa_k5_Ninf_eps4.png").stat().st_size > 0


@pytest.mark.skipif(not fashion_ranking_path().is_file(), reason="needs checkpoints/fashion_ranking.pt")
@pytest.mark.slow
def test_table_cli_batches_by_default_and_matches_one_query_image_at_a_time(tmp_path):
    def table(vectorize: str) -> dict:
        out = tmp_path / f"v{vectorize}.json"
        order_attack.main(["--methods", "rand,beta,nes", "--k", "5", "--N", "inf", "--eps", "4",
                           "--budget", "60", "--split", "val", "--instances", "3", "--no-progress",
                           "--vectorize", vectorize, "--out", str(out)])  # fmt: skip
        return json.loads(out.read_text())

    serial, batched = table("1"), table("3")
    assert order_attack.OrderAttackConfig().vectorize > 1
    for cell_one, cell_many in zip(serial["cells"], batched["cells"], strict=True):
        for name, one in cell_one["results"].items():
            many = cell_many["results"][name]
            for key in ("tau_s_mean", "mean_rank_mean", "success_rate", "queries_mean", "tau_s_curve"):
                assert many[key] == pytest.approx(one[key], abs=1e-6), (name, key)


def test_best_curve_reads_the_best_tau_s_seen_within_each_budget():
    curve = order_attack.best_curve([-0.2, -0.4, -0.3], [0, 50, 100], np.array([0, 49, 50, 100, 150]))
    assert curve.tolist() == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.4])


def test_white_box_reference_keeps_the_paper_protocol_and_bad_options_are_one_line(capsys):
    cfg = order_attack.OrderAttackConfig(settings="tuned", methods="rand,fo_pgd")
    (_, rand), (_, pgd) = order_attack.build_methods(cfg, 5, None, 4.0, D)
    assert rand.name == "rand" and pgd.delta == pytest.approx(D / 255) and pgd.sign is True
    from l2l.common.cli import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli(order_attack.main, ["--N", "inf,x"])
    assert exit_info.value.code == 2 and "N item 'x'" in capsys.readouterr().err


@pytest.mark.slow
def test_ranking_model_cli_saves_a_checkpoint_the_loader_reads(tmp_path, monkeypatch):
    import train.ranking_model as trainer
    from l2l.tasks.ranking_models import load_fashion_ranking_model, read_ranking_checkpoint

    g = torch.Generator().manual_seed(0)
    fake = {s: (torch.rand(40, 1, 28, 28, generator=g), torch.arange(40) % 4) for s in ("train", "test")}
    monkeypatch.setattr(trainer, "load_fashion_mnist", lambda split: fake[split])
    out = tmp_path / "rank.pt"
    trainer.main(["--epochs", "1", "--batch-size", "16", "--embed-dim", "8", "--min-recall", "0",
                  "--out", str(out)])  # fmt: skip
    ckpt = read_ranking_checkpoint(out)
    assert ckpt["steps"] == 3 and 0 <= ckpt["recall_at_1"] <= 1 and ckpt["config"]["embed_dim"] == 8
    model = load_fashion_ranking_model(str(out))
    emb = model(fake["test"][0][:3])
    assert emb.shape == (3, 8) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="epochs=0 must be >= 1"):
        trainer.main(["--epochs", "0"])
