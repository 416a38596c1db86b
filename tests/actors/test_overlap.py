"""Overlapped collection: the next step's batch is played on a thread during the update, drawn
from the driver's RNG in loop order (so a checkpoint's RNG state is the synchronous loop's
contract), consumed as the next step's first round, and never launched after the last step."""

from __future__ import annotations

import random
import threading
from types import SimpleNamespace

from spiral_games.actors.collection import StepCollector
from spiral_games.actors.overlap import OverlappedCollector

from .fake_pool import FakePool


def overlapped(pool, rng, steps, draw=lambda: None, batch_size=6):
    return OverlappedCollector(StepCollector(pool, 4, rng, draw), pool.sync, batch_size, steps)


def test_the_batch_played_ahead_is_the_next_steps_first_round():
    sync = SimpleNamespace(defer_catch_up=False)
    pool, rng, expected = FakePool(sync), random.Random(5), random.Random(5)
    draws = iter(["step1", "ahead"])
    collector = overlapped(pool, rng, steps=2, draw=lambda: next(draws))

    first = collector.collect()  # step 1: nothing was played ahead
    assert pool.calls == [(4, expected.randrange(2**31), "step1")]
    collector.play_ahead(1)
    ahead_seed = expected.randrange(2**31)  # drawn now, in the loop, not on the thread
    collector.wait()
    inner = random.Random(ahead_seed)
    # 4 games of one trained turn each, until batch_size=6 turns: two collects on the thread
    assert pool.calls[1:] == [(4, inner.randrange(2**31), "ahead") for _ in range(2)]
    assert pool.deferred == [False, True, True]  # no catch-up push while the learner updates
    assert sync.defer_catch_up is False
    metrics = collector.metrics()
    assert metrics["overlap/collect_seconds"] > 0
    assert 0 <= metrics["overlap/hidden_share"] <= 1

    second = collector.collect()  # step 2's first round: the batch played ahead, no new seed
    assert len(second) == 8 and len(pool.calls) == 3 and first != second
    assert rng.getstate() == expected.getstate()
    collector.play_ahead(2)  # the last step: nothing to play for
    collector.wait()
    assert len(pool.calls) == 3 and rng.getstate() == expected.getstate()
    assert collector.metrics() == {}
    assert collector.close() is False and pool.closing


def test_a_step_short_of_samples_plays_its_later_rounds_in_step():
    pool = FakePool(SimpleNamespace(defer_catch_up=False))
    rng, expected = random.Random(1), random.Random(1)
    collector = overlapped(pool, rng, steps=3)
    collector.collect()
    collector.play_ahead(1)
    collector.wait()
    skipped = [expected.randrange(2**31) for _ in range(2)]  # step 1's round, the batch ahead
    assert [seed for _, seed, _ in pool.calls[:1]] == skipped[:1]
    collector.collect()  # step 2's first round: the batch played ahead
    collector.collect()  # say its games were too stale: the next round is played now
    assert pool.calls[-1] == (4, expected.randrange(2**31), None)
    assert rng.getstate() == expected.getstate()
    collector.close()


def test_closing_with_a_batch_in_flight_says_so():
    gate = threading.Event()
    pool = FakePool(SimpleNamespace(defer_catch_up=False), gate)
    collector = overlapped(pool, random.Random(0), steps=2)
    collector.play_ahead(1)
    try:
        assert collector.close() is True  # the pool's shutdown must not wait for busy workers
        assert pool.closing
    finally:
        gate.set()
