"""Who the policy trains against, as the training loop sees it: the workers' own opponents
(self-play or a fixed opponent: nothing for the driver to do), or the league
(`rollout.opponents=league`), which the driver draws from, rates, grows with snapshots of the
policy, sends to the workers and saves in every checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from spiral_games.actors.learner_group import LearnerGroup
from spiral_games.actors.rollout_pool import RolloutPool
from spiral_games.config.schema import LeagueConfig
from spiral_games.learn.learner import Learner
from spiral_games.play.league import League, LeagueDraw, member_name
from spiral_games.run.league_files import league_snapshots, prune_snapshots, snapshot_path
from spiral_games.run.metrics import PhaseClock
from spiral_games.types import Episode


class OpponentSource(Protocol):
    """What the loop asks of the opponents each step, in this order: a draw per collection,
    the step's games to rate, a snapshot after the update, its sending with the push, the
    state to checkpoint, and metrics."""

    def draw(self) -> LeagueDraw | None:
        """The opponents of the next collection (None: the workers' own)."""
        ...

    def record(self, episodes: Sequence[Episode]) -> None:
        """Rate the step's games, in episode order."""
        ...

    def join(self, done: int, learner: Learner | LearnerGroup, clock: PhaseClock) -> None:
        """The policy after `done` steps may join as an opponent: its weights are written now
        (timed as `checkpoint`), before the loop state is captured, so a checkpoint never names
        a missing file."""
        ...

    def send(self) -> None:
        """The workers get the opponent that joined this step (with the push: they are idle)."""
        ...

    def checkpointed(self) -> None:
        """A checkpoint was just saved: drop what no kept checkpoint needs."""
        ...

    def state_dict(self) -> dict[str, Any] | None:
        """What a resume needs (`LoopState.league`); None when there is nothing to keep."""
        ...

    def metrics(self) -> dict[str, float]:
        """This step's opponent metrics (`league/*`)."""
        ...


class WorkerOpponents:
    """The workers' own opponents for the whole run: the current policy (self-play) or the
    fixed opponent rollout.opponents names, which each worker built at its start. The driver
    draws, rates and keeps nothing."""

    def draw(self) -> LeagueDraw | None:
        return None

    def record(self, episodes: Sequence[Episode]) -> None:
        """Nothing is rated."""

    def join(self, done: int, learner: Learner | LearnerGroup, clock: PhaseClock) -> None:
        """The opponents never change."""

    def send(self) -> None:
        """The workers hold their opponents from the start."""

    def checkpointed(self) -> None:
        """No files beyond the checkpoint."""

    def state_dict(self) -> dict[str, Any] | None:
        return None

    def metrics(self) -> dict[str, float]:
        return {}


class LeagueOpponents:
    """The run's `League` with its snapshot files in `run_dir/league/` and the rollout pool
    that plays them."""

    def __init__(self, league: League, run_dir: Path, pool: RolloutPool, steps: int) -> None:
        """`steps`: the run's last step (its policy never joins: no step would play it)."""
        self.league, self.run_dir, self.pool, self.steps = league, run_dir, pool, steps
        self.joined = False  # a snapshot joined after this step's update, not yet sent

    @classmethod
    def resume(
        cls,
        cfg: LeagueConfig,
        state: dict[str, Any] | None,
        run_dir: Path,
        pool: RolloutPool,
        steps: int,
    ) -> LeagueOpponents:
        """A new league, or the checkpoint's `state` with its snapshots sent to the workers."""
        league = League(cfg)
        if state is not None:
            league.load_state_dict(state)
            pool.set_league(league_snapshots(run_dir, league))
        return cls(league, run_dir, pool, steps)

    def draw(self) -> LeagueDraw | None:
        return self.league.draw()

    def record(self, episodes: Sequence[Episode]) -> None:
        """Rate every league game played (self-play games are skipped)."""
        self.league.record(episodes)

    def join(self, done: int, learner: Learner | LearnerGroup, clock: PhaseClock) -> None:
        if self.league.snapshot_due(done) and done < self.steps:
            with clock("checkpoint"):
                learner.export_weights(snapshot_path(self.run_dir, member_name(done)))
            self.league.add_snapshot(done)
            self.joined = True

    def send(self) -> None:
        if self.joined:
            self.pool.set_league(league_snapshots(self.run_dir, self.league))
            self.joined = False

    def checkpointed(self) -> None:
        """Delete the snapshot files no kept checkpoint's league names."""
        prune_snapshots(self.run_dir)

    def state_dict(self) -> dict[str, Any] | None:
        return self.league.state_dict()

    def metrics(self) -> dict[str, float]:
        return self.league.metrics()
