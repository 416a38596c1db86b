"""A step's training batch as its games come in: every game played, the RAE samples of those
recent enough to train on, and the games dropped as too stale. Pure: standard library."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from spiral_games.learn.advantage import RoleBaselines, episode_samples
from spiral_games.learn.staleness import split_stale
from spiral_games.types import Episode, Sample


@dataclass
class StepBatch:
    """Filled one round of games at a time until it holds enough samples."""

    step: int  # the learner's version: updates made before this step's
    bound: int  # versions a trained turn may lag `step` (train.staleness_bound())
    baselines: RoleBaselines | None  # the run's RAE state, updated in place; None: A = R
    gamma: float | Mapping[str, float]  # game -> games.<g>.gamma, else train.gamma
    drop_zero: bool  # train.drop_zero_advantage
    episodes: list[Episode] = field(default_factory=list)  # every game, in the order played
    samples: list[Sample] = field(default_factory=list)  # what the learner trains on
    dropped: list[Episode] = field(default_factory=list)  # more than `bound` versions behind

    def add(self, new: Sequence[Episode]) -> None:
        """Take one round of games: drop those more than `bound` versions behind the learner,
        and turn the rest into samples with RAE advantages (one baseline update per kept game
        and role, in episode order: the dropped games never move a baseline)."""
        fresh, stale = split_stale(new, self.step, self.bound)
        self.episodes += new
        self.dropped += stale
        self.samples += episode_samples(fresh, self.baselines, self.gamma, self.drop_zero)
