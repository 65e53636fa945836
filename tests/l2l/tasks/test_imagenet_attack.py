"""The ImageNet track: foolbox's 20 real ImageNet images, EfficientNet-Lite0's shipped weights, the
[0, 1]-pixel ball families, and that a search attack runs on d = 150,528 with exact query counts."""

from __future__ import annotations

import pytest
import torch

import l2l
from l2l.tasks import imagenet_attack
from l2l.tasks.imagenet_attack import Normalized, efficientnet_lite0, imagenet_data, imagenet_files


def test_the_images_are_foolboxs_twenty_labelled_jpegs():
    files = imagenet_files()
    assert [f.index for f in files] == list(range(20))
    assert all(0 <= f.label < 1000 and f.path.suffix == ".jpg" for f in files)
    assert files[0].label == 243 and files[19].label == 305  # from the file names


@pytest.mark.slow
def test_lite_scaling_classifies_more_images_than_the_imagenet_mean_and_std():
    """The docstring's claim, which chose the model's input convention: 17 of 20 against 16."""
    images, labels = imagenet_data()
    assert images.shape == (20, 3, 224, 224) and images.min() >= 0 and images.max() <= 1
    network = efficientnet_lite0().model
    imagenet_convention = Normalized(network, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).eval()
    with torch.no_grad():
        lite = (efficientnet_lite0()(images).argmax(1) == labels).sum().item()
        usual = (imagenet_convention(images).argmax(1) == labels).sum().item()
    assert (lite, usual) == (17, 16)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "norm", "eps"), [("imagenet_attack_linf", "linf", 0.05), ("imagenet_attack_l2", "l2", 5.0)]
)
def test_families_attack_the_correct_images_in_pixel_space(name, norm, eps):
    family = l2l.make_family(name)
    assert family.split_size("test") == 17 and family.split_size("val") == 0
    assert type(family).splits == ("test",)
    with pytest.raises(ValueError, match="has no 'val' split"):
        family.instances("val")
    task = family.instance("test", 0)
    assert task.dim == 150_528 and task.image_shape == (3, 224, 224)
    assert (task.ball.norm, task.ball.eps, task.c) == (norm, eps, 0.0)
    assert task.model is efficientnet_lite0()  # every instance shares one model: lockstep forwards stack
    assert not task.success(task.x0().unsqueeze(0)).item()  # the test split is classified correctly
    far = task.project(torch.full((task.dim,), 10.0))
    assert torch.linalg.vector_norm(far, ord=float("inf") if norm == "linf" else 2) <= eps + 1e-5
    assert task.adversarial(far.unsqueeze(0)).min() >= 0 and task.adversarial(far.unsqueeze(0)).max() <= 1


@pytest.mark.slow
def test_square_fools_the_first_image_within_a_small_budget_one_query_per_step():
    task = l2l.make_task("imagenet_attack_linf", split="test", index=0)
    trajectory = l2l.run(
        l2l.make_optimizer("square"), task, steps=200, budget=200, seed=0, stop_at_success=True
    )
    assert trajectory.success_query is not None and trajectory.success_query <= 200
    assert trajectory.queries == list(range(len(trajectory.queries)))  # one query per step


def test_missing_packages_name_the_pip_command(monkeypatch):
    monkeypatch.setattr(imagenet_attack.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite-pytorch"):
        imagenet_files()


def test_bad_eps_is_refused_before_anything_loads(monkeypatch):
    monkeypatch.setattr(imagenet_attack, "efficientnet_lite0", lambda: pytest.fail("loaded the model"))
    with pytest.raises(ValueError, match="eps=-1 must be > 0"):
        l2l.make_family("imagenet_attack_l2", eps=-1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_paper_settings_build_their_methods_on_the_tracks_ball(norm):
    published = imagenet_attack.PAPER_SETTINGS[norm]
    assert l2l.tasks.registry.paper_settings(f"imagenet_attack_{norm}") == published
    assert l2l.tasks.registry.paper_settings("mnist_attack_linf") == {}
    for name, params in imagenet_attack.PAPER_SETTINGS[norm].items():
        optimizer = l2l.make_optimizer(name, **params)
        assert all(getattr(optimizer, key) == value for key, value in params.items())
        assert norm in getattr(type(optimizer), "norms", (norm,)), f"{name} cannot search an {norm} ball"
