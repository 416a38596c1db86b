"""Any TextArena game without a module of its own: moves read from its real observations, each
tried on a copy of the env; the random opponent that plays from them."""

from __future__ import annotations

import pytest

from spiral_games.config.choices import ActionFormat
from spiral_games.config.schema import SPIRAL_HELDOUT_GAMES, GameConfig
from spiral_games.play.loop import GameJob, play_games
from spiral_games.play.observed import (
    FREE_TEXT_REPLY,
    ObservedRandomPolicy,
    ObservedTextArenaGame,
    bracketed_tokens,
    number_variants,
    observed_actions,
)
from spiral_games.play.registry import build_rules
from spiral_games.types import GameEnd


def _observation(env_id: str, moves: tuple[str, ...] = ()) -> str:
    """The text TextArena 0.7.4 itself shows the player to move, after `moves`."""
    import textarena as ta

    env = ta.make(env_id)
    env.reset(num_players=2, seed=1)
    for move in moves:
        env.get_observation()
        env.step(move)
    return env.get_observation()[1]


def test_reader_finds_pig_dice_and_snake_moves_in_their_own_observations():
    assert bracketed_tokens(_observation("PigDice-v0")) == ["[roll]", "[hold]"]
    assert bracketed_tokens(_observation("Snake-v0")) == ["[up]", "[down]", "[left]", "[right]"]


def test_reader_skips_speaker_tags_and_keeps_played_moves_once():
    text = _observation("ConnectFour-v0", ("[col 3]", "[col 5]"))
    assert "[Player 0] [col 3]" in text and text.count("[GAME]") >= 3  # what TextArena writes
    assert bracketed_tokens(text) == ["[col 4]", "[col 1]", "[col 3]", "[col 5]"]


def test_reader_reads_liars_dice_bids_and_calls():
    assert bracketed_tokens(_observation("LiarsDice-v0")) == ["[Bid: 3, 4]", "[Call]"]


def test_numbers_are_varied_from_0_to_9_in_tokens_with_one_or_two():
    assert number_variants("[col 4]") == [f"[col {n}]" for n in range(10)]
    bids = number_variants("[Bid: 3, 4]")
    assert len(bids) == 100 and bids[0] == "[Bid: 0, 0]" and bids[-1] == "[Bid: 9, 9]"
    assert bids[34] == "[Bid: 3, 4]"
    assert number_variants("[roll]") == ["[roll]"]
    assert number_variants("[1, 2, 3]") == ["[1, 2, 3]"]  # three numbers: 1000 tries, not varied


def test_observed_actions_vary_each_pattern_once_in_order():
    assert observed_actions("say [col 4] or [col 1], or [pass]") == [
        *[f"[col {n}]" for n in range(10)],
        "[pass]",
    ]


def test_connect_four_lists_the_open_columns_and_drops_a_full_one():
    env = ObservedTextArenaGame("ConnectFour-v0")
    env.reset(0)
    assert env.legal_actions(0) == [f"[col {c}]" for c in range(7)]
    for _ in range(6):
        assert env.step("[col 0]").valid
    role = env.current_role
    assert env.legal_actions(role) == [f"[col {c}]" for c in range(1, 7)]
    board = [row[:] for row in env.raw.state.game_state["board"]]
    refused = env.step("[col 0]")
    assert not refused.valid and "full" in refused.reason
    assert env.raw.state.game_state["board"] == board and env.current_role == role  # unchanged


def test_liars_dice_offers_60_opening_bids_and_a_call_only_after_a_bid():
    env = ObservedTextArenaGame("LiarsDice-v0")
    env.reset(0)
    first = env.legal_actions(0)
    # TextArena takes any quantity 0-9 with a face 1-6 as the opening bid; nothing to call yet
    assert first == [f"[Bid: {q}, {f}]" for q in range(10) for f in range(1, 7)]
    assert env.step("[Bid: 2, 3]").valid
    after = env.legal_actions(1)
    assert "[Call]" in after and "[Bid: 2, 3]" not in after and "[Bid: 2, 4]" in after


def test_truth_and_deception_talks_freely_then_guesses_a_fact():
    env = ObservedTextArenaGame("TruthAndDeception-v0")
    env.reset(0)
    for turn in range(5):  # the conversation: any text
        assert env.legal_actions(env.current_role) is None
        assert env.step(f"[message {turn}]").valid
    assert env.legal_actions(env.current_role) == ["[Fact 1]", "[Fact 2]"]
    refused = env.step("[I think the first]")
    assert not refused.valid and not env.done
    assert env.step("[Fact 2]").valid and env.done


def test_a_conversation_turn_takes_the_whole_reply_as_its_message():
    """A turn that takes any text (TruthAndDeception's conversation) lists no move: a boxed
    answer is played as on any turn (bracketed), and a reply with no box is the message whole,
    not an invalid move. A turn that lists moves still needs one of them."""
    env = ObservedTextArenaGame("TruthAndDeception-v0")
    env.reset(0)
    role = env.current_role
    assert env.takes_any_text(role)
    assert env.parse_action("\\boxed{Which is older?}", role).action == "[Which is older?]"
    said = env.parse_action("I think  the second\none is true.", role)
    assert said.action == "I think the second one is true." and not said.lenient
    assert env.parse_action("   ", role).action is None
    assert env.step(said.action).valid
    assert env.raw.state.logs[-1][1] == "I think the second one is true."
    while env.legal_actions(env.current_role) is None:
        env.step("Go on.")
    role = env.current_role
    assert not env.takes_any_text(role)
    assert env.parse_action("Fact 1, surely", role).action is None  # needs [Fact 1] or a box
    assert env.parse_action("\\boxed{Fact 1}", role).action == "[Fact 1]"


def test_snake_counts_a_word_it_does_not_know_as_invalid_and_keeps_the_snake():
    env = ObservedTextArenaGame("Snake-v0")
    env.reset(0)
    refused = env.step("[jump]")
    assert not refused.valid and "invalid move" in refused.reason
    assert all(snake.alive for snake in env.raw.state.game_state["snakes"].values())


def test_a_reply_outside_the_list_is_judged_by_the_env():
    env = ObservedTextArenaGame("ConnectFour-v0")
    env.reset(0)
    assert env.parse_action("\\boxed{[col 2]}", 0).action == "[col 2]"
    assert env.parse_action("\\boxed{2}", 0).action == "[2]"  # ConnectFour takes '[2]' too
    assert env.step("[2]").valid
    assert env.parse_action("no box", 1).action is None


def test_short_prompt_state_is_the_rules_and_the_board_without_the_history():
    env = ObservedTextArenaGame("ConnectFour-v0")
    env.reset(0)
    for move in ("[col 3]", "[col 3]", "[col 4]"):
        env.step(move)
    state = env.current_state(env.current_role)
    assert state is not None and "You are Player 1 in Connect Four" in state
    assert state.count("Board state") == 1 and ". . . X X . ." in state
    env = ObservedTextArenaGame("TruthAndDeception-v0")
    env.reset(0)
    assert env.current_state(0) is None  # no board: the prompt shows the whole observation


@pytest.mark.parametrize("env_id", SPIRAL_HELDOUT_GAMES)
def test_random_against_random_finishes_every_game_without_an_invalid_move(env_id):
    cfg = GameConfig(
        env={"_target_": "spiral_games.play.observed.ObservedTextArenaGame", "env_id": env_id},
        action_format=ActionFormat.boxed,
    )
    rules = build_rules(env_id, cfg)
    seats = (ObservedRandomPolicy(1), ObservedRandomPolicy(2))
    episodes = play_games([GameJob(rules, seed, seats) for seed in range(4)])
    assert all(e.end is GameEnd.FINISHED and e.invalid_role is None for e in episodes)
    assert all(t.valid for e in episodes for t in e.turns)
    if env_id == "TruthAndDeception-v0":
        talk = [t for e in episodes for t in e.turns if t.action == f"[{FREE_TEXT_REPLY}]"]
        assert len(talk) == 4 * 5  # five turns of talk a game, the sixth a guess
