"""l2l-zo: learned zeroth-order optimizers and the tuned hand-designed baselines they face.

Quick tour::

    import l2l
    task = l2l.make_task("mnist_attack", split="test", index=3)
    opt = l2l.make_optimizer("zo_adam", task="mnist_attack", q=20)
    traj = l2l.run(opt, task, steps=200, seed=0)
    trajs = l2l.run_many(opt, l2l.make_family("mnist_attack").instances("test", limit=8), steps=200,
                         seeds=range(8))  # 8 attacks in lockstep, one model forward per step
"""

from l2l import learned, optimizers, tasks
from l2l.attacks import AttackResult, attack
from l2l.loading import load_optimizer
from l2l.optimizers import make_optimizer, optimizer_names
from l2l.oracle import NonFiniteLoss, Oracle, QueryBudgetExceeded, StackedOracle
from l2l.run import Trajectory, run
from l2l.run_many import run_many, runs_in_lockstep
from l2l.tasks import family_names, make_family, make_task
from l2l.version import __version__

__all__ = [
    "AttackResult",
    "NonFiniteLoss",
    "Oracle",
    "QueryBudgetExceeded",
    "StackedOracle",
    "Trajectory",
    "__version__",
    "attack",
    "family_names",
    "learned",
    "load_optimizer",
    "make_family",
    "make_optimizer",
    "make_task",
    "optimizer_names",
    "optimizers",
    "run",
    "run_many",
    "runs_in_lockstep",
    "tasks",
]
