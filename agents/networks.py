"""Actor and critic networks of the ZO-RL policy (papers/003 sec. 3.2): CNNs with batch norm for images.

Iterates that are images (attack perturbations, e.g. 1x28x28) go through convolutions; plain vectors
(binary classification weights) through an MLP. Every network starts with batch norm over its input,
papers/003's answer to iterates whose scale differs between tasks and coordinates.

- **Actor** (x -> direction in [-1, 1]^d). Images: two strided 3x3 convolutions (1/2, then 1/4
  resolution) with batch norm, flattened, and a dense layer to one value per pixel, plus a learned
  per-pixel multiple of the normalized input (a skip path: e.g. the L1 distortion's gradient,
  c * sign(delta_i), is a per-pixel function of the iterate that coarse maps cannot place), then tanh.
  Vectors: batch norm, stable-baselines3's MLP, tanh.
- **Critic** (x, a -> Q), :class:`QNetwork`: state features phi(x) (images: the same kind of strided
  CNN with batch norm; vectors: batch norm and an MLP) multiplied elementwise with a linear map of the
  action's direction, then an MLP. A step's reward is about eta d (grad f(x) . u)^2, a product of a
  function of x and the action, which this critic's form matches; on a small quadratic it learned
  directions closer to the true gradient than an MLP over the concatenation [x, a] of raw actions
  (figures in docs/results/zo_rl.md, "Figures behind design choices").

Why strided convolutions and dense layers rather than full-resolution convolutions: on one CPU thread
the backward pass of small-channel convolutions dominated a DDPG step (docs/results/zo_rl.md times a
full-resolution 5x5 design); dense layers run as fast matrix products.

:class:`ZORLPolicy` plugs these into stable-baselines3's TD3/DDPG policy (actor, critic and their
target copies); its ``features_extractor_kwargs`` (``image_shape``, ``width``, ``hidden``) are saved with
the model, so loading rebuilds the same networks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BaseModel
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.td3.policies import Actor, TD3Policy
from torch import nn

ImageShape = tuple[int, int, int]
#: state-dict prefixes of the target networks, which a policy-only save leaves out
TARGETS = ("actor_target.", "critic_target.")
#: the networks the targets copy, in the order of :data:`TARGETS`
ONLINE = ("actor.", "critic.")


def check_image_shape(image_shape: Any, dim: int) -> ImageShape | None:
    """``image_shape`` as a (C, H, W) tuple matching ``dim`` entries, or None (a plain vector)."""
    if image_shape is None:
        return None
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or shape[0] * shape[1] * shape[2] != dim:
        raise ValueError(f"image_shape={image_shape!r} must be (channels, height, width) with {dim} entries")
    return shape  # type: ignore[return-value]


def strided_trunk(in_channels: int, width: int) -> nn.Sequential:
    """[B, C, H, W] -> [B, 2 width * ceil(H/4) * ceil(W/4)]: batch norm, two stride-2 3x3 conv layers."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.Flatten(),
    )  # fmt: skip


def trunk_features(image_shape: ImageShape, width: int) -> int:
    """Output size of :func:`strided_trunk` on images of ``image_shape``."""
    _, height, wide = image_shape
    return 2 * width * (-(-height // 4)) * (-(-wide // 4))


def _as_images(flat: torch.Tensor, shape: ImageShape) -> torch.Tensor:
    return flat.reshape(flat.shape[0], *shape)


class IterateFeatures(BaseFeaturesExtractor):
    """The actor's view of an iterate.

    Images: the strided trunk's flattened maps, followed by the batch-normalized input itself (for the
    head's per-pixel skip path). Vectors: batch norm, a dense layer and ReLU; with ``skip``, followed by
    the batch-normalized input too (observations of several channels, such as the iterate and the last
    estimate, whose actor may copy a channel).

    Args:
        observation_space: a flat Box of d entries.
        image_shape: (C, H, W) when the iterate is an image, else None.
        width: channels of the first convolution (the second has twice as many).
        hidden: units of the vector layer.
        skip: vectors only: pass the normalized input on for a :class:`SkipHead`.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        image_shape: Any = None,
        width: int = 8,
        hidden: int = 64,
        skip: bool = False,
    ):
        dim = int(observation_space.shape[0])
        self.image_shape = check_image_shape(image_shape, dim)
        self.skip = bool(self.image_shape) or skip
        maps = trunk_features(self.image_shape, width) if self.image_shape else hidden
        super().__init__(observation_space, features_dim=maps + (dim if self.skip else 0))
        if self.image_shape:
            self.trunk: nn.Module = strided_trunk(self.image_shape[0], width)
        else:
            self.trunk = nn.Sequential(nn.BatchNorm1d(dim), nn.Linear(dim, hidden), nn.ReLU())
        if self.skip:
            self.norm: nn.Module = nn.BatchNorm1d(dim)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        shaped = _as_images(observations, self.image_shape) if self.image_shape else observations
        maps = self.trunk(shaped)
        return torch.cat([maps, self.norm(observations)], dim=1) if self.skip else maps


class SkipHead(nn.Module):
    """[maps, normalized x] -> tanh(dense(maps) + sum_c s_c * x_c): one direction value per pixel.

    Args:
        maps: size of the trunk's flattened maps (the rest of the input is the normalized observation,
            ``channels`` images of d pixels).
        dim: d, the action size.
        channels: images in the observation (2 for ``observe="image_delta"``).
    """

    def __init__(self, maps: int, dim: int, channels: int = 1):
        super().__init__()
        self.maps, self.dim = maps, dim
        self.dense = nn.Linear(maps, dim)
        # [d] for one channel keeps policies saved before image_delta existed loadable
        self.skip = nn.Parameter(torch.zeros(dim) if channels == 1 else torch.zeros(channels, dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps, pixels = features[:, : self.maps], features[:, self.maps :]
        skip = (self.skip.reshape(-1, self.dim) * pixels.reshape(len(pixels), -1, self.dim)).sum(dim=1)
        return torch.tanh(self.dense(maps) + skip)


def as_direction(actions: torch.Tensor) -> torch.Tensor:
    """Actions [B, d] rescaled to norm sqrt(d), as the environment uses them (``envs.action_to_direction``).

    The critic sees only the direction, as the environment does: a critic that saw the raw action could
    extrapolate value along its length, and its gradient would push the actor's tanh into saturation
    (every entry +-1, a fixed sign vector) where the actor stops learning, as it did on binary
    classification without this rescaling (docs/results/zo_rl.md).
    """
    return actions * (actions.shape[1] ** 0.5 / actions.norm(dim=1, keepdim=True).clamp_min(1e-6))


class QNetwork(nn.Module):
    """Q(x, a) = MLP([phi(x) * psi(a), phi(x)]): features of the state times features of the action.

    phi is the strided CNN with batch norm (images) or batch norm and an MLP (vectors); psi is a linear map
    of the action's direction (:func:`as_direction`). Why a product: see the module docstring.

    Args:
        dim: size of the observation (d, or 2d for ``observe="image_delta"``).
        image_shape: (C, H, W) for image iterates, else None.
        width: channels of the image trunk's first convolution.
        hidden: units of the features and of the MLP layers.
        action_dim: size of the actions (none: ``dim``).
    """

    def __init__(
        self, dim: int, image_shape: ImageShape | None, width: int, hidden: int, action_dim: int | None = None
    ):
        super().__init__()
        self.image_shape = image_shape
        if image_shape:
            trunk = strided_trunk(image_shape[0], width)
            self.state: nn.Module = nn.Sequential(
                trunk, nn.Linear(trunk_features(image_shape, width), hidden)
            )
        else:
            self.state = nn.Sequential(
                nn.BatchNorm1d(dim), nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
            )
        self.action = nn.Linear(action_dim or dim, hidden, bias=False)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        phi = self.state(_as_images(obs, self.image_shape) if self.image_shape else obs)
        return self.head(torch.cat([phi * self.action(as_direction(actions)), phi], dim=1))


class PairCritic(BaseModel):
    """Q(x, a) networks (``n_critics`` :class:`QNetwork` s; DDPG uses one), in stable-baselines3's interface.

    Args:
        observation_space, action_space: the flat Boxes of the environment (d entries each).
        image_shape: (C, H, W) for image iterates, else None.
        width: channels of the image trunk's first convolution.
        hidden: units of the MLP layers.
        n_critics: number of Q networks.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        image_shape: ImageShape | None,
        width: int,
        hidden: int,
        n_critics: int = 1,
    ):
        super().__init__(observation_space, action_space)
        dim, actions = int(observation_space.shape[0]), int(action_space.shape[0])
        self.q_networks = nn.ModuleList(
            QNetwork(dim, image_shape, width, hidden, actions) for _ in range(n_critics)
        )

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(net(obs.float(), actions) for net in self.q_networks)

    def q1_forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The first Q network only (what the actor's loss uses)."""
        return self.q_networks[0](obs.float(), actions)


class ZORLPolicy(TD3Policy):
    """stable-baselines3's TD3/DDPG policy with the networks of this module.

    Keyword arguments as for ``TD3Policy``; ``features_extractor_kwargs`` may hold ``image_shape``
    ((C, H, W) or None), ``width`` and ``hidden``, which the critic uses too. For images the actor's MLP
    is replaced by a :class:`SkipHead`; for vectors the actor is stable-baselines3's MLP over
    :class:`IterateFeatures` (``net_arch`` sets its hidden layers), except for observations of several
    channels (``iterate_estimate``), which get the skip head over the vector layer too.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("features_extractor_class", IterateFeatures)
        observation_space = kwargs.get("observation_space", args[0] if args else None)
        action_space = kwargs.get("action_space", args[1] if len(args) > 1 else None)
        options = dict(kwargs.get("features_extractor_kwargs") or {})
        known = observation_space is not None and action_space is not None
        channels = int(observation_space.shape[0]) // int(action_space.shape[0]) if known else 1
        if options.get("image_shape") is None and channels > 1:  # so that its actor can copy a channel
            kwargs["features_extractor_kwargs"] = {**options, "skip": True}
        super().__init__(*args, **kwargs)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """torch's ``load_state_dict``; a state without target networks gets them as copies of the networks.

        A policy-only save (:meth:`agents.ddpg.ZORLAgent.save_policy_only`) leaves the targets out, and
        DDPG's set-up starts them as such copies anyway; filling them in here is what lets
        ``stable_baselines3.DDPG.load`` read such a zip with its strict state-dict check.

        Args:
            state_dict: the policy's state, with or without its ``actor_target.``/``critic_target.`` entries.
            strict, assign: as for :meth:`torch.nn.Module.load_state_dict`.
        """
        return super().load_state_dict(with_targets(state_dict), strict=strict, assign=assign)

    def _network_options(self) -> tuple[ImageShape | None, int, int]:
        options = self.features_extractor_kwargs
        dim = int(self.observation_space.shape[0])
        shape = check_image_shape(options.get("image_shape"), dim)
        return shape, int(options.get("width", 8)), int(options.get("hidden", 64))

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> Actor:
        shape, width, hidden = self._network_options()
        kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        dim = int(self.action_space.shape[0])
        channels = int(self.observation_space.shape[0]) // dim
        skip = bool(shape) or channels > 1
        if skip:
            kwargs["net_arch"] = []  # the skip head replaces the MLP
        actor = Actor(**kwargs)
        if skip:
            actor.mu = SkipHead(trunk_features(shape, width) if shape else hidden, dim, channels)
        return actor.to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> PairCritic:
        shape, width, hidden = self._network_options()
        n_critics = int(self.critic_kwargs["n_critics"])
        critic = PairCritic(self.observation_space, self.action_space, shape, width, hidden, n_critics)  # type: ignore[arg-type]
        return critic.to(self.device)


def with_targets(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with every ``actor.``/``critic.`` entry copied to its target, if it holds no target entry.

    A state that has any target entry is returned as it is (a full save, or one for torch to refuse).
    The copies are clones, so an ``assign=True`` load does not tie a target to its network.

    Args:
        state: a :class:`ZORLPolicy` state dict.
    """
    if any(key.startswith(TARGETS) for key in state):
        return dict(state)
    full = dict(state)
    for online, target in zip(ONLINE, TARGETS, strict=True):
        full.update({target + k[len(online) :]: v.clone() for k, v in state.items() if k.startswith(online)})
    return full
