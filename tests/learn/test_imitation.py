"""The imitation baseline's data: which seats' turns are kept, and each step's batch."""

from __future__ import annotations

import pytest

from spiral_games.config.choices import KeepTurns
from spiral_games.learn.imitation import demonstration_batch, imitation_samples, kept_roles
from spiral_games.types import Episode, Sample, Turn


def turn(role: int, token: int, valid: bool = True, rendered: bool = True) -> Turn:
    reply = (token, 2) if rendered else ()
    return Turn(
        role,
        "obs",
        "\\boxed{[x]}",
        "[x]" if valid else None,
        valid,
        prompt_ids=(1, token) if rendered else (),
        response_ids=reply,
        logprobs=(0.0,) * len(reply),
    )


def game(returns, trained=(0, 1), name="g") -> Episode:
    turns = (turn(0, 10), turn(1, 11), turn(0, 12), turn(1, 13, valid=False), turn(1, 14))
    return Episode(name, 7, turns, returns, "done", trained_roles=trained)


@pytest.mark.parametrize(
    ("returns", "trained", "keep", "draws", "kept"),
    [
        ((1.0, -1.0), (0, 1), KeepTurns.winner, True, (0,)),
        ((-0.5, 0.5), (0, 1), KeepTurns.winner, True, (1,)),
        ((0.0, 0.0), (0, 1), KeepTurns.winner, True, (0, 1)),  # a draw: both seats
        ((0.0, 0.0), (0, 1), KeepTurns.winner, False, ()),
        ((-1.0, 1.0), (0, 1), KeepTurns.all, False, (0, 1)),
        ((1.0, -1.0), (1,), KeepTurns.winner, True, ()),  # the expert's seat (1) lost
        ((1.0, -1.0), (1,), KeepTurns.all, True, (1,)),  # the opponent's seat is never kept
    ],
)
def test_kept_roles_are_the_experts_winning_or_drawing_seats_or_all(
    returns, trained, keep, draws, kept
):
    assert kept_roles(game(returns, trained), keep, draws) == kept


def test_samples_are_the_kept_seats_valid_rendered_turns_with_advantage_one():
    unrendered = Episode("h", 3, (turn(0, 20, rendered=False), turn(1, 21)), (0.0, 0.0), "draw")
    samples = imitation_samples(
        [game((-1.0, 1.0)), unrendered], {"g": KeepTurns.winner, "h": KeepTurns.all}, True
    )
    # g: seat 1 won; its invalid turn (13) is left out. h: seat 0's move had no tokens
    assert [(s.game, s.role, s.response_ids[0]) for s in samples] == [
        ("g", 1, 11),
        ("g", 1, 14),
        ("h", 1, 21),
    ]
    assert all(s.advantage == 1.0 and s.logprobs == (0.0, 0.0) for s in samples)


def _samples(n: int) -> list[Sample]:
    return [Sample((1,), (k,), (0.0,), 1.0, "g", 0, 0) for k in range(n)]


def test_batches_read_every_sample_once_per_pass_each_pass_in_a_new_order():
    data = _samples(10)
    batches = [demonstration_batch(data, step, 4, seed=3) for step in range(5)]  # 2 passes
    ids = [s.response_ids[0] for b in batches for s in b]
    assert sorted(ids[:10]) == sorted(ids[10:]) == list(range(10))
    assert ids[:10] != ids[10:] and ids[:10] != list(range(10))
    again = [s.response_ids[0] for s in demonstration_batch(data, 3, 4, seed=3)]
    assert again == ids[12:16]  # a step's batch depends on the step alone
    assert [s.version for s in batches[4]] == [4] * 4  # labelled with its step: no staleness


def test_a_batch_larger_than_the_data_spans_passes_and_no_data_is_an_error():
    batch = demonstration_batch(_samples(3), 0, 7, seed=0)
    assert sorted(s.response_ids[0] for s in batch[:3]) == [0, 1, 2]
    assert len(batch) == 7
    with pytest.raises(ValueError, match="no demonstrations"):
        demonstration_batch([], 0, 4, seed=0)
