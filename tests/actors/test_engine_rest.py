"""What the engines do during an update: awake engines get the weights every train.push_every
steps; sleeping ones are put to sleep before each update and woken by a push after every one."""

from __future__ import annotations

from spiral_games.actors.engine_rest import AwakeEngines, SleepingEngines


class SleepCounter:
    def __init__(self) -> None:
        self.sleeps = 0

    def sleep(self) -> None:
        self.sleeps += 1


def test_awake_engines_are_pushed_every_push_every_steps():
    engines = AwakeEngines(push_every=3)
    engines.rest()
    assert [engines.push_due(done) for done in range(1, 7)] == [False, False, True] * 2
    assert AwakeEngines(push_every=1).push_due(5)


def test_sleeping_engines_sleep_once_per_update_and_are_pushed_every_step():
    pool = SleepCounter()
    engines = SleepingEngines(pool)
    engines.rest()
    engines.rest()
    assert pool.sleeps == 2
    assert all(engines.push_due(done) for done in range(1, 7))
