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

from spiral_games.actors.rollout_pool import RolloutPool
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


class Overlap:
    """Launches collections on one background thread; reports how much of each was hidden."""

    def __init__(self, pool: RolloutPool, sync: WeightSync) -> None:
        self.pool, self.sync = pool, sync
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="spiral-collect")
        self.last: PendingCollect | None = None

    def collect(
        self, num_episodes: int, seed: int, min_samples: int, draw: LeagueDraw | None = None
    ) -> PendingCollect:
        """Start collecting now, `num_episodes` games at a time (seeded from `seed`, opponents
        from the league `draw` if any) until the episodes hold `min_samples` trained turns (a
        full batch, unless some are dropped); the caller keeps working."""

        def run() -> tuple[list[Episode], float]:
            rng = random.Random(seed)
            episodes: list[Episode] = []
            self.sync.defer_catch_up = True
            try:
                while sum(len(trained_turns(e)) for e in episodes) < min_samples:
                    episodes += self.pool.collect(num_episodes, rng.randrange(2**31), draw)
                return episodes, time.perf_counter()
            finally:
                self.sync.defer_catch_up = False

        self.last = PendingCollect(self.executor.submit(run), time.perf_counter())
        return self.last

    def metrics(self) -> dict[str, float]:
        """The last waited-for collection: its seconds, the seconds the update hid, and that
        share (1: the update hid all of it)."""
        last = self.last
        if last is None or not last.future.done() or last.future.exception() is not None:
            return {}
        hidden = max(0.0, last.seconds - last.waited)
        return {
            "overlap/collect_seconds": last.seconds,
            "overlap/hidden_seconds": hidden,
            "overlap/hidden_share": hidden / last.seconds if last.seconds > 0 else 0.0,
        }

    def close(self) -> bool:
        """Stop taking work; returns whether a collection was still in flight (it is abandoned:
        the pool's shutdown ends it without waiting for the busy workers)."""
        busy = self.last is not None and not self.last.future.done()
        self.pool.closing = True
        self.executor.shutdown(wait=False, cancel_futures=True)
        return busy
