"""Per-task reward normalisation (``agent.reward_norm``): every task's values on one scale.

A multi-task critic with one output range, one learning rate and one entropy temperature per task
learns badly when one task's returns are 1,000 times another's: the large task's TD errors own the
shared layers' gradient and a categorical critic's fixed support cannot cover both. Two remedies:

- ``returns`` (BRC, Nauman et al. 2025; naumix/BiggerRegularizedCategorical ``jaxrl/normalizer.py``):
  per task, the min and max over finished episodes of the discounted return-to-go G_t (an episode
  cut by the time limit bootstraps its tail with its mean reward x 1/(1 - gamma), as BRC does);
  rewards are divided by ``(max(G_max, |G_min|) - alpha / (1 - gamma) * target_entropy / 2) / v_max``
  so that every task's soft values span about ``v_max``. The entropy term is there because the soft
  value also carries alpha x entropy per step, which the division does not touch.
- ``scale`` (ARS, Cho et al., ICML 2025, Algorithm 1): a history-based factor per task, set once the
  random warm-up has filled the replay and refreshed at every reset (``agent.reset_every``), and
  frozen in between so that the critic's targets do not drift under it. The paper's formula (6) was
  not available to us; our reading of "history-based" is ``c_i = 1 / mean |r|`` over every reward
  task i has produced, which puts every task's mean reward magnitude at 1.

Until a task has finished an episode (``returns``) or the factors are first set (``scale``), its
rewards pass unchanged (BRC would divide by infinity there, zeroing them). The logged returns are
always the env's own: the normaliser changes only the rewards the TD targets see. Its state (the
unfinished episodes' rewards included) is checkpointed, so a resume is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

MODES = ("none", "returns", "scale")


def discounted_returns(rewards: np.ndarray, gamma: float, truncated: bool) -> np.ndarray:
    """G_t for one episode's rewards [L]; a truncated episode bootstraps its tail with the
    episode's mean reward as if it went on for ever (BRC's choice; it needs no critic)."""
    tail = rewards.mean() / (1.0 - gamma) if truncated else 0.0
    returns = np.empty_like(rewards, dtype=np.float64)
    for t in range(len(rewards) - 1, -1, -1):
        tail = rewards[t] + gamma * tail
        returns[t] = tail
    return returns


class RewardNormaliser:
    """Watches every env step's rewards per task and hands the update a factor per task [T]."""

    def __init__(
        self,
        mode: str,
        num_tasks: int,
        gamma: float,
        v_max: float,
        target_entropy: float,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"reward_norm must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.num_tasks, self.gamma = mode, num_tasks, gamma
        self.v_max, self.target_entropy = v_max, target_entropy
        self.episodes: list[list[float]] = [[] for _ in range(num_tasks)]  # unfinished episodes
        self.returns_min = np.full(num_tasks, np.inf)  # [T]
        self.returns_max = np.full(num_tasks, -np.inf)  # [T]
        self.abs_sum = np.zeros(num_tasks)  # [T] sum of |r| (scale)
        self.count = np.zeros(num_tasks)  # [T]
        self.factors = np.ones(num_tasks)  # [T] scale's frozen factors
        self._on_device: torch.Tensor | None = None  # max(G_max, |G_min|) [T] on the device

    @property
    def active(self) -> bool:
        return self.mode != "none"

    def observe(self, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """One vector step: reward, terminated, truncated [T]. A NaN or infinite reward is left
        out of the statistics (one would poison a task's factor for good): ``scale`` skips it,
        ``returns`` skips the episode it falls in, whose return it makes unknown."""
        if self.mode == "scale":
            finite = np.isfinite(reward)
            self.abs_sum += np.where(finite, np.abs(reward), 0.0)
            self.count += finite
            return
        if self.mode != "returns":
            return
        done = np.logical_or(terminated, truncated)
        for task in range(self.num_tasks):
            self.episodes[task].append(float(reward[task]))
            if done[task]:
                returns = discounted_returns(
                    np.asarray(self.episodes[task]), self.gamma, bool(truncated[task])
                )
                self.episodes[task] = []
                if not np.isfinite(returns).all():
                    continue
                self.returns_min[task] = min(self.returns_min[task], returns.min())
                self.returns_max[task] = max(self.returns_max[task], returns.max())
                self._on_device = None

    def refresh(self) -> None:
        """``scale``: set the frozen factors from the history so far (warm-up end, each reset)."""
        if self.mode == "scale":
            mean_abs = self.abs_sum / np.maximum(self.count, 1)
            self.factors = np.where(mean_abs > 0, 1.0 / np.maximum(mean_abs, 1e-12), 1.0)
            self._on_device = None

    def factor(self, alpha: torch.Tensor) -> torch.Tensor:
        """What each task's rewards are multiplied by, [T] on the device (alpha [T]: the current
        temperatures, for the entropy correction of ``returns``)."""
        if self.mode == "scale":
            if self._on_device is None:
                self._on_device = torch.as_tensor(
                    self.factors, dtype=torch.float32, device=alpha.device
                )
            return self._on_device
        if self.mode != "returns":
            return torch.ones_like(alpha)
        if self._on_device is None:
            seen = np.isfinite(self.returns_max)
            extent = np.where(seen, np.maximum(self.returns_max, np.abs(self.returns_min)), np.nan)
            self._on_device = torch.as_tensor(extent, dtype=torch.float32, device=alpha.device)
        horizon = 1.0 / (1.0 - self.gamma)
        denominator = (self._on_device - alpha * horizon * self.target_entropy / 2) / self.v_max
        denominator = denominator.clamp_min(1e-6)
        return torch.where(self._on_device.isnan(), torch.ones_like(alpha), 1.0 / denominator)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain lists only, so a checkpoint holding it loads with weights_only."""
        return {
            "mode": self.mode,
            "episodes": [list(episode) for episode in self.episodes],
            "returns_min": torch.as_tensor(self.returns_min),
            "returns_max": torch.as_tensor(self.returns_max),
            "abs_sum": torch.as_tensor(self.abs_sum),
            "count": torch.as_tensor(self.count),
            "factors": torch.as_tensor(self.factors),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["mode"] != self.mode:
            raise ValueError(f"the checkpoint's reward_norm is {state['mode']}, not {self.mode}")
        self.episodes = [list(map(float, episode)) for episode in state["episodes"]]
        for name in ("returns_min", "returns_max", "abs_sum", "count", "factors"):
            setattr(self, name, state[name].numpy().astype(np.float64).copy())
        self._on_device = None
