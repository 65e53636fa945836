"""The learned guided sampler: its untrained control is ZO-Trend, ES trains it, its checkpoint loads."""

from __future__ import annotations

import torch

import l2l
from l2l.learned import GuidedSampler, GuidedSamplerConfig, MetaTrainer, save_learned
from l2l.learned.meta_grad import MetaGradConfig


def _tasks(split: str = "train") -> list:
    return l2l.make_family("quadratic", dim=6, sizes=(4, 2, 2)).instances(split)


def test_the_untrained_sampler_is_zo_trend_bit_for_bit():
    sampler = GuidedSamplerConfig(q=4, mu=1e-3, delta=0.5).new_optimizer()
    trend = l2l.make_optimizer("zo_trend", q=4, mu=1e-3, delta=0.5, decay=0.99, strength=1.0)
    task = _tasks()[0]
    assert l2l.run(sampler, task, steps=20, seed=3).losses == l2l.run(trend, task, steps=20, seed=3).losses


def test_es_moves_the_policy_and_the_checkpoint_loads_as_trained(tmp_path):
    config = GuidedSamplerConfig(q=4, mu=1e-3, delta=0.5, steps=10)
    trainer = MetaTrainer(
        config, _tasks(), MetaGradConfig("es", population=2, sigma=0.1, objective="final_loss")
    )
    trainer.begin_stage("policy")
    trainer.meta_step()
    weight = trainer.optimizer.modules()["policy"].out.weight
    assert weight.abs().sum() > 0  # it starts at zero
    frozen = trainer.frozen()
    save_learned(tmp_path / "s.pt", frozen, train_config={}, task={}, val={})
    loaded = l2l.load_optimizer(tmp_path / "s.pt")
    assert isinstance(loaded, GuidedSampler)
    task = _tasks("val")[0]
    assert l2l.run(loaded, task, steps=10, seed=1).losses == l2l.run(frozen, task, steps=10, seed=1).losses
    trend = l2l.make_optimizer("zo_trend", q=4, mu=1e-3, delta=0.5)
    assert l2l.run(loaded, task, steps=10, seed=1).losses != l2l.run(trend, task, steps=10, seed=1).losses


def test_truncated_bptt_trains_it_too():
    trainer = MetaTrainer(GuidedSamplerConfig(q=4, mu=1e-3, delta=0.5, steps=6, unroll=3), _tasks())
    trainer.begin_stage("policy")
    stats = trainer.meta_step()
    assert torch.isfinite(torch.tensor(stats["meta_loss"]))
    assert trainer.optimizer.modules()["policy"].out.weight.abs().sum() > 0
