"""The imitation baseline's demonstrations: the expert's games, each move rendered as the reply
the model would give to the prompt its rollout policy sends at that state."""

from __future__ import annotations

from typing import cast

import pytest

from spiral_games.actors.rollout_worker import RolloutWorker, WorkerConfig
from spiral_games.errors import ConfigError
from spiral_games.learn.imitation import imitation_samples
from spiral_games.play.loop import replayed
from spiral_games.run.demonstrations import play_demonstrations
from spiral_games.types import Observation, PolicyOutput

from ..tiny_run import tiny_config


@pytest.mark.parametrize(
    ("style", "action_format"),
    [("short", "lenient"), ("chat", "boxed"), ("short", "choice")],
)
def test_every_demonstration_prompt_is_the_rollout_policys_and_its_reply_plays_the_move(
    tiny, style, action_format
):
    """At each state of the expert's games (replayed through `GameSession`), the rollout
    worker's own policy sends its engine the very token ids the demonstration trains on, and
    the demonstration's reply, submitted as an engine would return it, plays the expert's
    move: the format imitation trains is the one self-play plays."""
    cfg = tiny_config(
        f"model.prompt_style={style}",
        f"model.action_format={action_format}",
        "rollout.max_tokens=24",
        "sft.demonstrations=6",
        games="kuhn,tictactoe",
    )
    episodes = play_demonstrations(cfg, tiny.tokenizer)
    assert {e.game for e in episodes} == {"kuhn", "tictactoe"}
    worker = RolloutWorker(WorkerConfig.from_run(cfg, tiny.path))
    decode = tiny.tokenizer.decode
    try:
        checked = 0
        for episode in episodes:
            assert episode.trained_roles == (0, 1)  # the expert against itself
            actions: list[str] = []
            for turn in episode.turns:
                session = replayed(worker.rules[episode.game], episode.seed, actions)
                obs = cast(Observation, session.pending())
                played = worker.policy.act([obs])[0]
                assert played.prompt_ids == turn.prompt_ids  # token for token
                assert played.choice_ids == turn.choice_ids
                if action_format == "choice":  # one token, among the legal actions' own
                    assert len(turn.response_ids) == 1 and turn.response_ids[0] in turn.choice_ids
                else:  # the expert's boxed move and EOS, within the reply budget
                    assert turn.response_ids[-1] == tiny.tokenizer.eos_token_id
                    assert len(turn.response_ids) <= 24
                    assert decode(turn.response_ids, skip_special_tokens=True) == turn.response
                reply = PolicyOutput(
                    text=decode(turn.response_ids, skip_special_tokens=True),
                    token_ids=turn.response_ids,
                    choice_ids=turn.choice_ids,
                )
                session.submit(obs, reply)
                assert session.turns[-1].valid and session.turns[-1].action == turn.action
                actions.append(cast(str, turn.action))
                checked += 1
        assert checked == sum(len(e.turns) for e in episodes) > 12
    finally:
        worker.close()


def test_a_move_too_long_for_the_reply_budget_is_played_but_not_trained_on(tiny):
    """Negotiation's expert boxes a sentence: with a 16-token budget no reply of the model could
    hold it, so its games go on and its turns carry no tokens (and give no samples)."""
    cfg = tiny_config("rollout.max_tokens=16", "sft.demonstrations=2", games="negotiation")
    episodes = play_demonstrations(cfg, tiny.tokenizer)
    turns = [t for e in episodes for t in e.turns]
    assert turns and all(t.valid and not t.response_ids for t in turns)
    assert imitation_samples(episodes, {"negotiation": cfg.sft.keep}, cfg.sft.keep_draws) == []
    longer = tiny_config("rollout.max_tokens=64", "sft.demonstrations=2", games="negotiation")
    assert all(t.response_ids for e in play_demonstrations(longer, tiny.tokenizer) for t in e.turns)


def test_against_another_opponent_only_the_experts_seat_is_its_own(tiny):
    cfg = tiny_config("sft.against=random", "sft.demonstrations=8", games="tictactoe")
    episodes = play_demonstrations(cfg, tiny.tokenizer)
    assert {e.opponent for e in episodes} == {"random"}
    assert {e.trained_roles for e in episodes} == {(0,), (1,)}  # the seat alternates at random
    for e in episodes:
        expert = e.trained_roles[0]
        assert all(bool(t.response_ids) == (t.role == expert) for t in e.turns)
        assert e.returns[expert] >= e.returns[1 - expert]  # minimax never loses


def test_a_game_without_the_expert_is_one_clear_error(tiny):
    cfg = tiny_config("sft.expert=oracle", games="kuhn")
    with pytest.raises(ConfigError, match=r"sft.expert='oracle' is no fixed opponent of kuhn"):
        play_demonstrations(cfg, tiny.tokenizer)
