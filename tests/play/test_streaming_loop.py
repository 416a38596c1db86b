"""The game loop with streaming policies: answers in any order, one game at a time, mixed with
round policies, within the concurrency limit, and no game held up by another's slow reply."""

from __future__ import annotations

import dataclasses
import itertools
import random
import zlib
from collections.abc import Collection, Sequence

import pytest

from spiral_games.config.compose import compose_run_config
from spiral_games.errors import GameError
from spiral_games.play.loop import GameJob, GameRules, play_games
from spiral_games.play.policy import RandomPolicy
from spiral_games.play.registry import build_rules
from spiral_games.types import Episode, GameEnd, Observation, PolicyOutput

from ..conftest import REPO

GAMES = ("kuhn", "tictactoe", "nim")


@pytest.fixture(scope="module")
def rules() -> dict[str, GameRules]:
    cfg = compose_run_config(REPO / "conf", [f"+games=[{','.join(GAMES)}]"])
    return {name: build_rules(name, cfg.games[name]) for name in GAMES}


def move(obs: Observation) -> PolicyOutput:
    """A legal move chosen by the observation alone, so the answer order cannot change a game."""
    assert obs.legal_actions, obs
    pick = obs.legal_actions[zlib.crc32(obs.text.encode()) % len(obs.legal_actions)]
    return PolicyOutput(text=f"\\boxed{{{pick}}}")


class RoundChooser:
    """The same moves as `Shuffled`, answered in rounds."""

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        return [move(obs) for obs in observations]


class Shuffled:
    """Streams: each poll answers a random one to `per_poll` of the open tickets it is asked
    about, in random order; `hold` is answered only once it is the last ticket asked about."""

    def __init__(self, seed: int, per_poll: int = 1, hold: str | None = None) -> None:
        self.rng = random.Random(seed)
        self.per_poll, self.hold = per_poll, hold
        self.tickets = (f"t{n}" for n in itertools.count())
        self.open: dict[str, Observation] = {}
        self.in_flight_max = 0
        self.answered: list[str] = []  # tickets in the order they were answered
        self.version = 0  # stamped on each answer when it is submitted

    @property
    def streaming(self) -> bool:
        return True

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        raise AssertionError("a streaming policy is never asked in rounds")

    def submit(self, observation: Observation) -> str:
        ticket = next(self.tickets)
        self.open[ticket] = observation
        self.in_flight_max = max(self.in_flight_max, len(self.open))
        return ticket

    def poll(self, tickets: Collection[str]) -> dict[str, PolicyOutput]:
        asked = list(tickets)
        assert asked and set(asked) <= self.open.keys(), (asked, list(self.open))
        if self.hold in asked and len(asked) > 1:
            asked.remove(self.hold)
        self.rng.shuffle(asked)
        done = asked[: self.rng.randint(1, self.per_poll)]
        self.answered += done
        return {t: dataclasses.replace(move(self.open.pop(t)), version=int(t[1:])) for t in done}

    def abort(self, tickets: Collection[str]) -> None:
        for ticket in tickets:
            del self.open[ticket]


def jobs(rules: dict[str, GameRules], seats, count: int) -> list[GameJob]:
    """`count` games cycling through kuhn, tictactoe and nim, seed = job index."""
    return [GameJob(rules[GAMES[i % len(GAMES)]], i, seats(i)) for i in range(count)]


def check_in_job_order_and_finished(episodes: list[Episode], played: list[GameJob]) -> None:
    assert len(episodes) == len(played)
    assert [(e.game, e.seed) for e in episodes] == [(j.rules.name, j.seed) for j in played]
    assert all(e.end is GameEnd.FINISHED and e.turns for e in episodes), [
        e.reason for e in episodes
    ]


@pytest.mark.parametrize("per_poll", [1, 3, 100])
def test_out_of_order_answers_play_the_same_games_as_rounds(rules, per_poll):
    streamed = Shuffled(seed=per_poll, per_poll=per_poll)
    played = jobs(rules, lambda i: (streamed, streamed), 12)
    episodes = play_games(played)
    check_in_job_order_and_finished(episodes, played)
    in_rounds = play_games(jobs(rules, lambda i: (RoundChooser(), RoundChooser()), 12))
    as_moves = [[(t.role, t.action) for t in e.turns] for e in episodes]
    assert as_moves == [[(t.role, t.action) for t in e.turns] for e in in_rounds]
    assert [e.returns for e in episodes] == [e.returns for e in in_rounds]
    assert not streamed.open and len(streamed.answered) == sum(len(e.turns) for e in episodes)


def test_each_turn_records_the_version_of_its_own_answer(rules):
    streamed = Shuffled(seed=0, per_poll=2)
    episodes = play_games(jobs(rules, lambda i: (streamed, streamed), 6))
    versions = [t.version for e in episodes for t in e.turns]
    assert sorted(versions) == list(range(len(versions)))  # the ticket number, stamped on it


def test_streaming_and_round_policies_share_games(rules):
    streamed, rand = Shuffled(seed=1, per_poll=2), RandomPolicy(seed=2)
    played = jobs(rules, lambda i: (streamed, rand) if i % 2 else (rand, streamed), 10)
    episodes = play_games(played, concurrency=4)
    check_in_job_order_and_finished(episodes, played)
    streamed_seat = [1 - i % 2 for i in range(10)]
    streamed_turns = sum(
        1
        for e, seat in zip(episodes, streamed_seat, strict=True)
        for t in e.turns
        if t.role == seat
    )
    assert len(streamed.answered) == streamed_turns > 0
    assert any(
        t.role != seat for e, seat in zip(episodes, streamed_seat, strict=True) for t in e.turns
    )


def test_two_streaming_policies_in_one_game(rules):
    first, second = Shuffled(seed=3, per_poll=2), Shuffled(seed=4)
    played = jobs(rules, lambda i: (first, second), 9)
    episodes = play_games(played, concurrency=5)
    check_in_job_order_and_finished(episodes, played)
    assert len(first.answered) == sum(1 for e in episodes for t in e.turns if t.role == 0)
    assert len(second.answered) == sum(1 for e in episodes for t in e.turns if t.role == 1)


@pytest.mark.parametrize("concurrency", [1, 3, 7])
def test_no_more_requests_in_flight_than_games_allowed_at_once(rules, concurrency):
    streamed = Shuffled(seed=5, per_poll=concurrency)
    played = jobs(rules, lambda i: (streamed, streamed), 20)
    episodes = play_games(played, concurrency=concurrency)
    check_in_job_order_and_finished(episodes, played)
    assert streamed.in_flight_max == concurrency  # full, refilled as games end, never over


def test_a_game_waiting_on_its_answer_holds_up_no_other_game(rules):
    held = Shuffled(seed=6, per_poll=2, hold="t0")  # game 0's first move, asked first
    played = jobs(rules, lambda i: (held, held), 8)
    episodes = play_games(played)
    check_in_job_order_and_finished(episodes, played)
    # every other game was played to its end before game 0 got its first answer
    others = sum(len(e.turns) for e in episodes[1:])
    assert held.answered.index("t0") == others
    assert len(held.answered) == others + len(episodes[0].turns)


class Silent:
    """Streams, but its poll answers nothing."""

    streaming = True

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        raise AssertionError("a streaming policy is never asked in rounds")

    def __init__(self, answer: dict[str, PolicyOutput] | None = None) -> None:
        self.answer = answer or {}
        self.submitted: list[str] = []
        self.aborted: list[str] = []

    def submit(self, observation: Observation) -> str:
        self.submitted.append(f"t{len(self.submitted)}")
        return self.submitted[-1]

    def poll(self, tickets: Collection[str]) -> dict[str, PolicyOutput]:
        return dict(self.answer)

    def abort(self, tickets: Collection[str]) -> None:
        self.aborted += sorted(tickets)


def test_a_poll_with_no_answer_is_a_clear_error(rules):
    with pytest.raises(GameError, match=r"Silent\.poll returned no answer"):
        play_games(jobs(rules, lambda i: (Silent(), RandomPolicy(0)), 2))


def test_a_failed_loop_aborts_every_open_request(rules):
    """The engine must not keep requests nobody will collect (vLLM would refuse the next
    batched call): every ticket still open when the loop fails is aborted."""
    silent = Silent()
    with pytest.raises(GameError):
        play_games(jobs(rules, lambda i: (silent, silent), 3))
    assert silent.submitted and sorted(silent.aborted) == sorted(silent.submitted)


def test_an_answer_to_a_ticket_never_asked_is_a_clear_error(rules):
    stray = Silent({"nobody": PolicyOutput(text="\\boxed{[check]}")})
    with pytest.raises(GameError, match="unknown ticket 'nobody'"):
        play_games(jobs(rules, lambda i: (stray, RandomPolicy(0)), 1))
