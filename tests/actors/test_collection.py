"""The synchronous collector: one round per call, one seed from the driver's RNG and one draw
of opponents per round, and nothing in flight between rounds."""

from __future__ import annotations

import random

from spiral_games.actors.collection import StepCollector

from .fake_pool import FakePool


def test_each_round_draws_one_seed_and_the_opponents_of_that_moment():
    pool, rng, expected = FakePool(), random.Random(3), random.Random(3)
    draws = iter(["first", "second"])
    collector = StepCollector(pool, 4, rng, lambda: next(draws))
    assert len(collector.collect()) == 4
    collector.collect()
    assert pool.calls == [
        (4, expected.randrange(2**31), "first"),
        (4, expected.randrange(2**31), "second"),
    ]
    assert rng.getstate() == expected.getstate()  # what a checkpoint saves: no hidden draws


def test_nothing_is_played_during_the_update():
    pool, rng = FakePool(), random.Random(0)
    collector = StepCollector(pool, 2, rng, lambda: None)
    state = rng.getstate()
    collector.play_ahead(1)
    collector.wait()
    assert pool.calls == [] and rng.getstate() == state
    assert collector.metrics() == {}
    assert collector.close() is False and not pool.closing
