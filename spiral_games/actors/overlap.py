"""Overlapped collection (`train.max_staleness > 0`): the rollout workers play the next batch
on a driver thread while the learner updates in the main one.

The thread only waits on Ray; the work runs in the worker actors, so the learner keeps the
driver's cores. A worker restarted during an overlapped collection is not caught up from the
thread (the learner's weights are mid-update): it plays on the starting weights, its episodes
are dropped as too stale, and the next push re-forms the transfer group with it.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import Future, ThreadPoolExecutor

from spiral_games.actors.collection import StepCollector
from spiral_games.actors.weight_sync import WeightSync
from spiral_games.learn.staleness import trained_turns
from spiral_games.play.league import LeagueDraw
from spiral_games.types import Episode


class PendingCollect:
    """A collection in flight: `wait` blocks until it is done, `result` returns it."""

    def __init__(self, future: Future[tuple[list[Episode], float]], started: float) -> None:
        self.future, self.started = future, started
        self.waited = 0.0  # seconds the loop blocked on it: the part the update did not hide

    def wait(self) -> None:
        t = time.perf_counter()
        self.future.result()
        self.waited += time.perf_counter() - t

    def result(self) -> list[Episode]:
        self.wait()
        return self.future.result()[0]

    @property
    def seconds(self) -> float:
        """Wall time from launch to the last episode (once done)."""
        return self.future.result()[1] - self.started


class OverlappedCollector:
    """A `Collector` that plays the next step's batch on one background thread while the
    learner updates, and reports how much of that collection the update hid. A step's first
    round is the batch played ahead; later rounds (episodes dropped as too stale) and the first
    step's are played in step by `rounds`."""

    def __init__(self, rounds: StepCollector, sync: WeightSync, batch_size: int, steps: int):
        """`batch_size`: trained turns a batch played ahead holds at least (learner.batch_size);
        `steps`: the run's last step, after which nothing is played ahead."""
        self.rounds, self.sync = rounds, sync
        self.batch_size, self.steps = batch_size, steps
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="spiral-collect")
        self.ahead: PendingCollect | None = None  # launched during the last update, not yet used

    def collect(self) -> list[Episode]:
        """The batch played during the last update if there is one, else a round played now."""
        if self.ahead is None:
            return self.rounds.collect()
        new, self.ahead = self.ahead.result(), None
        return new

    def play_ahead(self, done: int) -> None:
        """Start the next step's batch (seeded from the driver's RNG now, its opponents drawn
        now) unless step `done` is the last; the caller keeps working."""
        if done < self.steps:
            seed = self.rounds.rng.randrange(2**31)
            self.ahead = self._launch(self.rounds.episodes_per_round, seed, self.rounds.draw())

    def _launch(self, num_episodes: int, seed: int, draw: LeagueDraw | None) -> PendingCollect:
        """Collect `num_episodes` games at a time (seeded from `seed`) until the episodes hold
        `batch_size` trained turns (a full batch, unless some are dropped)."""
        pool = self.rounds.pool

        def run() -> tuple[list[Episode], float]:
            rng = random.Random(seed)
            episodes: list[Episode] = []
            self.sync.defer_catch_up = True
            try:
                while sum(len(trained_turns(e)) for e in episodes) < self.batch_size:
                    episodes += pool.collect(num_episodes, rng.randrange(2**31), draw)
                return episodes, time.perf_counter()
            finally:
                self.sync.defer_catch_up = False

        started = time.perf_counter()  # before the thread starts: it may finish at once
        return PendingCollect(self.executor.submit(run), started)

    def wait(self) -> None:
        """Block until the batch played ahead is in (the part of it the update did not hide)."""
        if self.ahead is not None:
            self.ahead.wait()

    def metrics(self) -> dict[str, float]:
        """The batch played during this step's update: its seconds, the seconds the update hid,
        and that share (1: the update hid all of it); nothing when none was played."""
        ahead = self.ahead
        if ahead is None or not ahead.future.done() or ahead.future.exception() is not None:
            return {}
        hidden = max(0.0, ahead.seconds - ahead.waited)
        return {
            "overlap/collect_seconds": ahead.seconds,
            "overlap/hidden_seconds": hidden,
            "overlap/hidden_share": hidden / ahead.seconds if ahead.seconds > 0 else 0.0,
        }

    def close(self) -> bool:
        """Stop taking work; returns whether a collection was still in flight (it is abandoned:
        the pool's shutdown ends it without waiting for the busy workers)."""
        busy = self.ahead is not None and not self.ahead.future.done()
        self.rounds.pool.closing = True
        self.executor.shutdown(wait=False, cancel_futures=True)
        return busy
