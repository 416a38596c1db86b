"""action_format=choice: the reply is one token, a masked choice among the legal actions, with
exact action probabilities that the engine and the learner compute alike."""

from __future__ import annotations

import math

import pytest
import torch

from spiral_games.config.schema import RolloutConfig
from spiral_games.errors import GameError
from spiral_games.llm.choice import choice_logprobs, choice_tokens
from spiral_games.llm.engines.base import EngineSpec
from spiral_games.llm.engines.hf import HFEngine
from spiral_games.llm.policy import LLMPolicy
from spiral_games.logprobs import response_logprobs
from spiral_games.play.policy import scores_actions
from spiral_games.types import Observation, SamplingParams

KUHN_BET = Observation("kuhn", 1, "You hold J. Player 0 bet.", ("[call]", "[fold]"))
KUHN_OPEN = Observation("kuhn", 0, "You hold K.", ("[check]", "[bet]"))
TTT = Observation("tictactoe", 0, "Board:\n...\n...\n...", tuple(f"[{i}]" for i in range(9)))


@pytest.fixture(scope="module")
def engine(tiny):
    spec = EngineSpec.from_rollout("hf", tiny.path, RolloutConfig(), dtype="float32", seed=0)
    engine = HFEngine(spec)
    yield engine
    engine.close()


def policy(
    engine,
    tiny,
    temperature=1.0,
    games=("kuhn", "tictactoe"),
    text_temperature=None,
    spell=False,
    max_model_len=2048,
):
    return LLMPolicy(
        engine,
        tiny.tokenizer,
        SamplingParams(temperature=temperature, top_p=1.0, max_tokens=24),
        {},
        max_model_len,
        on_context_overflow="draw",
        default_style="short",
        choice_games=games,
        text_params=None
        if text_temperature is None
        else SamplingParams(temperature=text_temperature, top_p=1.0, max_tokens=24),
        spell=spell,
    )


def test_each_legal_action_is_named_by_its_own_first_token(tiny):
    tokens = choice_tokens(tiny.tokenizer, ["[check]", "[bet]"])
    assert [tiny.tokenizer.decode([t]) for t in tokens] == ["check", "bet"]
    digits = choice_tokens(tiny.tokenizer, TTT.legal_actions)
    assert [tiny.tokenizer.decode([t]) for t in digits] == [str(i) for i in range(9)]


def test_actions_that_share_a_first_token_have_no_one_token_choice(tiny):
    assert choice_tokens(tiny.tokenizer, ["[offer 1 wood]", "[offer 2 wood]"]) is None


def test_choice_distribution_is_the_model_renormalised_over_the_choices():
    raw = [math.log(0.2), math.log(0.05), math.log(0.25)]  # 0.5 of the mass elsewhere
    policy = choice_logprobs(raw, temperature=1.0)
    assert [math.exp(x) for x in policy] == pytest.approx([0.4, 0.1, 0.5])
    hot = choice_logprobs(raw, temperature=0.5)  # p^2 renormalised
    assert [math.exp(x) for x in hot] == pytest.approx(
        [0.04 / 0.105, 0.0025 / 0.105, 0.0625 / 0.105]
    )
    flat = choice_logprobs(raw, temperature=2.0)  # sqrt(p) renormalised
    roots = [math.sqrt(p) for p in (0.2, 0.05, 0.25)]
    assert [math.exp(x) for x in flat] == pytest.approx([r / sum(roots) for r in roots])
    greedy = choice_logprobs(raw, temperature=0.0)
    assert [math.exp(x) for x in greedy] == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_replies_are_legal_and_their_probabilities_are_the_models_own(engine, tiny, temperature):
    """Prompts of different lengths in one batch (left padding): each reply is one of its
    choices, the stated distribution is the single-prompt forward pass renormalised at the
    temperature, and the learner takes the same log-prob at that temperature."""
    player = policy(engine, tiny, temperature)
    observations = [KUHN_BET, KUHN_OPEN, TTT]
    outputs = player.act(observations)
    for obs, out in zip(observations, outputs, strict=True):
        choices = choice_tokens(tiny.tokenizer, obs.legal_actions)
        assert out.choice_ids == choices and len(out.token_ids) == 1
        assert out.token_ids[0] in choices
        with torch.no_grad():
            logits = engine.model(input_ids=torch.tensor([out.prompt_ids])).logits[0, -1]
        expected = torch.log_softmax(logits[list(choices)].float() / temperature, -1)
        assert out.choice_logprobs == pytest.approx(expected.tolist(), abs=1e-5)
        assert out.logprobs[0] == pytest.approx(float(expected[choices.index(out.token_ids[0])]))
        # the learner's masked log-prob of the reply is the engine's
        pad = tiny.tokenizer.pad_token_id
        learner = response_logprobs(
            engine.model, [out.prompt_ids], [out.token_ids], pad, [choices], temperature
        )
        assert learner[0][0] == pytest.approx(out.logprobs[0], abs=1e-5)


def test_draws_follow_the_stated_probabilities(engine, tiny):
    """400 draws at temperature 1 land on each choice as often as stated (within 4 SE)."""
    player = policy(engine, tiny)
    engine.reseed(0)
    stated = player.action_probabilities([TTT])[0]
    outputs = player.act([TTT] * 400)
    picks = [tiny.tokenizer.decode(list(o.token_ids)) for o in outputs]
    for action, p in stated.items():
        share = picks.count(action.strip("[]")) / 400
        assert abs(share - p) <= 4 * math.sqrt(p * (1 - p) / 400) + 1e-9, (action, share, p)


def test_greedy_choice_is_the_most_likely_action(engine, tiny):
    stated = policy(engine, tiny, temperature=0.0).action_probabilities([TTT])[0]
    assert sorted(stated.values()) == [0.0] * 8 + [1.0]
    likely = max(policy(engine, tiny).action_probabilities([TTT])[0].items(), key=lambda kv: kv[1])
    assert stated[likely[0]] == 1.0


def test_only_choice_games_state_exact_probabilities(engine, tiny):
    player = policy(engine, tiny, games=("kuhn",))
    assert scores_actions(player, "kuhn") and not scores_actions(player, "tictactoe")
    with pytest.raises(GameError, match="action_format=choice"):
        player.action_probabilities([TTT])
    assert sum(player.action_probabilities([KUHN_BET])[0].values()) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def rules():
    from spiral_games.config.compose import compose_run_config
    from spiral_games.play.registry import build_rules

    from ..conftest import REPO

    cfg = compose_run_config(
        REPO / "conf",
        [
            "+games=[kuhn,tictactoe]",
            "games.kuhn.action_format=choice",
            "games.tictactoe.action_format=choice",
        ],
    )
    return {name: build_rules(name, game) for name, game in cfg.games.items()}


def test_games_played_by_choice_have_no_invalid_move_and_train_on_the_choice(engine, tiny, rules):
    from spiral_games.learn.advantage import RoleBaselines, episode_samples
    from spiral_games.play.loop import GameJob, play_games
    from spiral_games.play.policy import RandomPolicy

    player = policy(engine, tiny)
    jobs = [
        GameJob(rules[name], seed, seats)
        for name in ("kuhn", "tictactoe")
        for seed, seats in ((0, (player, player)), (1, (player, RandomPolicy(1))))
    ]
    episodes = play_games(jobs)
    for episode in episodes:
        assert episode.invalid_role is None and all(t.valid for t in episode.turns)
        for turn in episode.turns:
            if turn.response_ids:  # the model's turns
                assert turn.action is not None and turn.action.strip("[]") == turn.response
                assert turn.choice_ids and turn.response_ids[0] in turn.choice_ids
    samples = episode_samples(episodes, RoleBaselines(decay=0.95))
    assert samples and all(s.choice_ids and len(s.response_ids) == 1 for s in samples)


def test_kuhn_exploitability_of_a_choice_policy_is_exact(engine, tiny, rules):
    """Stated probabilities give the exact value (SE 0); sampling the same policy agrees
    within its own standard error."""
    from games.kuhn import KuhnExploitability

    player = policy(engine, tiny)
    exact = KuhnExploitability().measure(player, rules["kuhn"], seed=0)
    assert exact["exploitability_se"] == 0.0 and exact["invalid_share"] == pytest.approx(0.0)
    sampled = KuhnExploitability(samples=64, exact=False).measure(player, rules["kuhn"], seed=0)
    gap = abs(sampled["exploitability"] - exact["exploitability"])
    assert gap <= 4 * sampled["exploitability_se"] + 0.01, (exact, sampled)


def test_tictactoe_fixed_positions_are_scored_exactly_for_a_choice_policy(engine, tiny, rules):
    """The fixed-set rate is the mean probability the policy states for a value-keeping move:
    SE 0, no invalid reply, and the same number computed here from its stated probabilities."""
    from games.tictactoe import TicTacToeMoveQuality, best_moves, fixed_positions, session_at

    player = policy(engine, tiny)
    result = TicTacToeMoveQuality(games=2, positions=16).measure(player, rules["tictactoe"], 0)
    assert result["optimal_move_rate_fixed_se"] == 0.0
    assert result["invalid_share"] == pytest.approx(0.0, abs=1e-12)
    positions = fixed_positions(16)
    asked = [session_at(rules["tictactoe"], p.moves).pending() for p in positions]
    stated = player.action_probabilities(asked)
    by_hand = [
        sum(p for a, p in probs.items() if int(a.strip("[]")) in best_moves(pos.cells, pos.mark))
        for pos, probs in zip(positions, stated, strict=True)
    ]
    assert result["optimal_move_rate_fixed"] == pytest.approx(sum(by_hand) / 16, abs=1e-9)


def test_a_state_without_a_one_token_choice_is_answered_in_free_text(engine, tiny):
    """Negotiation's offers all start with "Offer": with action_format=choice its replies are
    free text (the reply budget, no choice), read as lenient reads them."""
    from spiral_games.config.compose import compose_run_config
    from spiral_games.play.loop import GameJob, play_games
    from spiral_games.play.registry import build_rules

    from ..conftest import REPO

    cfg = compose_run_config(
        REPO / "conf", ["+games=[negotiation]", "games.negotiation.action_format=choice"]
    )
    player = policy(engine, tiny, games=("negotiation",))
    (episode,) = play_games(
        [GameJob(build_rules("negotiation", cfg.games["negotiation"]), 0, (player, player))]
    )
    first = episode.turns[0]
    assert not first.choice_ids and len(first.response_ids) > 1


def test_free_text_turns_sample_at_the_text_temperature_and_choices_at_their_own(engine, tiny):
    """text_temperature (held-out evaluation of a choice policy: choices at 2, free text at
    0.6): at text temperature 0 the free-text replies to one prompt are the greedy reply, each
    time, while the choices in the same batch still draw at temperature 4."""
    free = Observation("negotiation", 0, "Make an offer.", ("[Offer: 1 Wood]", "[Offer: 2 Wood]"))
    player = policy(engine, tiny, temperature=4.0, games=("tictactoe",), text_temperature=0.0)
    engine.reseed(0)
    outputs = player.act([free] * 4 + [TTT] * 40)
    greedy = engine.generate([outputs[0].prompt_ids], SamplingParams.greedy(24))[0]
    assert {o.token_ids for o in outputs[:4]} == {greedy.token_ids}
    assert all(not o.choice_ids for o in outputs[:4])
    assert len({o.text for o in outputs[4:]}) > 1  # the choice was drawn, not taken greedily
    hot = policy(engine, tiny, temperature=4.0, games=("tictactoe",))  # no text temperature
    assert len({o.token_ids for o in hot.act([free] * 4)}) > 1


def test_a_greedy_choice_is_trained_on_the_models_own_probability(engine, tiny):
    """Rollouts at temperature 0 pick the most likely action; the learner then takes a choice
    at temperature 1 (LearnerSpec.choice_temperature), so the behaviour log-prob is the model's
    own renormalised one, not the greedy policy's 0 (which would skew every PPO ratio)."""
    (out,) = policy(engine, tiny, temperature=0.0).act([TTT])
    assert math.exp(max(out.choice_logprobs)) == 1.0
    pad = tiny.tokenizer.pad_token_id
    learner = response_logprobs(
        engine.model, [out.prompt_ids], [out.token_ids], pad, [out.choice_ids], 1.0
    )
    assert out.logprobs[0] < 0 and learner[0][0] == pytest.approx(out.logprobs[0], abs=1e-5)
    assert out.logprobs[0] == max(policy(engine, tiny).act([TTT])[0].choice_logprobs)


def test_a_choice_prompt_replaces_the_templates_default_system_turn(tiny):
    """The short prompt of a masked choice has an empty system turn instead of the template's
    default one (SmolLM2: "You are a helpful AI assistant named SmolLM, ..."); free text keeps
    it; a template that refuses a system turn gets the user turn alone."""
    import copy

    from spiral_games.llm.prompting import build_prompt_text

    tok = tiny.tokenizer
    default = build_prompt_text(tok, "You hold K.", "short", ["[check]", "[bet]"])
    choice = build_prompt_text(tok, "You hold K.", "short", ["[check]", "[bet]"], choice=True)
    assert "helpful AI assistant" in default and "helpful AI assistant" not in choice
    assert choice.startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\nYou hold K.")
    assert choice.endswith("Reply with one of: check, bet.<|im_end|>\n<|im_start|>assistant\n")
    strict = copy.deepcopy(tok)
    strict.chat_template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported')"
        " }}{% endif %}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "<assistant>"
    )
    alone = build_prompt_text(strict, "You hold K.", "short", ["[check]", "[bet]"], choice=True)
    assert alone == "<user>You hold K.\n\nReply with one of: check, bet.<assistant>"


def test_kuhns_choice_follows_the_card_written_into_the_reply(engine, tiny, rules):
    """Kuhn's masked choice is made after its reply starts with the seat's card (written for
    the model, `card_in_reply`): the prompt a policy sends ends with it, the probabilities it
    states are the model's next-token distribution there, and a free-text prompt has no such
    start; `card_in_reply=false` leaves the choice as the reply's first token."""
    from games.kuhn import INFO_SETS, KuhnPokerGame, _deal_for
    from spiral_games.llm.encoder import PromptEncoder
    from spiral_games.llm.prompting import build_prompt_text

    info = next(i for i in INFO_SETS if i.card == "K" and i.history == ("bet",))
    obs = _deal_for(rules["kuhn"], info, 0)[1]
    assert obs.reply_prefix == "K: " and "Your card: K." in (obs.position or "")
    encoder = PromptEncoder(
        tiny.tokenizer,
        {},
        2048,
        24,
        on_context_overflow="draw",
        default_style="short",
        choice_games=["kuhn"],
    )
    ids, _ = encoder.encode(obs, encoder.choices(obs))
    text = build_prompt_text(tiny.tokenizer, obs.position, "short", obs.legal_actions, True)
    assert tiny.tokenizer.decode(ids) == text + "K: "
    free = PromptEncoder(
        tiny.tokenizer, {}, 2048, 24, on_context_overflow="draw", default_style="short"
    )
    assert not tiny.tokenizer.decode(free.encode(obs, ())[0]).endswith("K: ")
    # the stated probabilities are the model's, right after the card
    with torch.no_grad():
        logits = engine.model(torch.tensor([ids])).logits[0, -1].float()
    raw = torch.log_softmax(logits, -1)[list(encoder.choices(obs))].tolist()
    expected = [math.exp(x) for x in choice_logprobs(raw, 1.0)]
    stated = policy(engine, tiny).action_probabilities([obs])[0]
    assert [stated[a] for a in obs.legal_actions] == pytest.approx(expected, abs=1e-5)
    plain = KuhnPokerGame(card_in_reply=False)
    plain.reset(0)
    assert plain.reply_prefix(plain.current_role) is None


def test_actions_that_share_a_beginning_are_chosen_by_the_token_after_it(tiny):
    """ConnectFour's "[col 0]" ... "[col 6]" share their first token: the reply starts with the
    shared "col " (written for the model) and the choice is the next token; where no token
    tells them apart (LiarsDice's bids) there is no masked choice."""
    from spiral_games.llm.choice import masked_choice
    from spiral_games.llm.encoder import PromptEncoder

    tok = tiny.tokenizer
    columns = tuple(f"[col {i}]" for i in range(7))
    prefix, tokens = masked_choice(tok, columns)
    assert prefix == "col " and [tok.decode([t]) for t in tokens] == [str(i) for i in range(7)]
    kuhn = ["[check]", "[bet]"]
    assert masked_choice(tok, kuhn) == ("", choice_tokens(tok, kuhn))
    assert masked_choice(tok, ["[Bid: 3, 4]", "[Bid: 3, 5]", "[Bid: 4, 4]"]) is None
    encoder = PromptEncoder(
        tok, {}, 2048, 24, on_context_overflow="draw", default_style="short", choice_games=["c4"]
    )
    obs = Observation("c4", 0, "Board:\n. . .", columns)
    ids, _ = encoder.encode(obs, encoder.choices(obs))
    assert tok.decode(ids).endswith("<|im_start|>assistant\ncol ")
    assert encoder.choices(obs) == tokens


BIDS = ("[Call]", *(f"[Bid: {q}, {f}]" for q in range(1, 11) for f in range(1, 7)))
LIARS = Observation("liars", 0, "Your dice: 3, 4, 4, 6, 1. Bid or call.", BIDS)


def test_names_no_token_tells_apart_are_spelled_through_every_branch(tiny):
    """LiarsDice's 61 moves: no masked choice, so each name is spelled; every walk through the
    branches ends on one legal name, a name that begins another ("col 1", "col 10") ends in
    the end token, and a token off every name is refused."""
    from spiral_games.llm.choice import Spelling, masked_choice, spelled_names

    tok = tiny.tokenizer
    assert masked_choice(tok, BIDS) is None
    names = spelled_names(tok, BIDS)
    assert [tok.decode(list(n)) for n in names] == [a.strip("[]") for a in BIDS]

    def leaves(spelling: Spelling) -> list[int]:
        options = spelling.next_choice()
        if not options:
            return [spelling.chosen]
        found = []
        for token in options:
            branch = Spelling(spelling.names, list(spelling.path), list(spelling.logprobs))
            branch.take(token, -1.0)
            found += leaves(branch)
        return found

    assert sorted(leaves(Spelling(names))) == list(range(len(BIDS)))
    first = Spelling(names)
    assert [tok.decode([t]) for t in first.next_choice()] == ["Call", "B"]
    with pytest.raises(ValueError, match="no legal name"):
        first.take(tok.eos_token_id, 0.0)
    short, long = spelled_names(tok, ["[col 1]", "[col 10]"])
    assert short[-1] == tok.eos_token_id and long[-1] != tok.eos_token_id
    assert spelled_names(tok, ["[a]", "[a]"]) is None


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_a_spelled_choice_is_legal_and_each_token_has_the_models_probability(
    engine, tiny, temperature
):
    """spell=True (held-out evaluation): a state without a one-token choice is answered by
    spelling a legal name; each chosen token's log-prob is the model's next-token distribution
    after the prompt and the tokens before it, renormalised over the tokens that go on to a
    legal name at the temperature; a written token (the only way on) has probability 1."""
    from spiral_games.llm.choice import Spelling, spelled_names

    player = policy(engine, tiny, temperature, games=("liars", "tictactoe"), spell=True)
    engine.reseed(0)
    outputs = player.act([LIARS] * 6 + [TTT])
    assert outputs[-1].choice_ids and outputs[-1].action is None  # a one-token choice as ever
    prompt = tiny.tokenizer.decode(list(outputs[0].prompt_ids))
    assert "Reply with one of: Call; Bid: 1, 1; Bid: 1, 2;" in prompt  # commas inside names
    names = spelled_names(tiny.tokenizer, BIDS)
    for out in outputs[:-1]:
        assert out.action in BIDS and not out.choice_ids
        assert out.text == out.action.strip("[]")
        walk = Spelling(names)
        for k, token in enumerate(out.token_ids):
            options = walk.options()
            if len(options) == 1:
                assert out.logprobs[k] == 0.0
            else:
                with torch.no_grad():
                    ids = [*out.prompt_ids, *out.token_ids[:k]]
                    logits = engine.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
                expected = torch.log_softmax(logits[list(options)] / temperature, -1)
                assert out.logprobs[k] == pytest.approx(
                    float(expected[options.index(token)]), abs=1e-5
                )
            walk.take(token, out.logprobs[k])
        assert walk.chosen == BIDS.index(out.action)
    assert len({o.action for o in outputs[:-1]}) > 1  # drawn, not the same name each time
    # without spell the same state is free text, as before
    (free,) = policy(engine, tiny, games=("liars",)).act([LIARS])
    assert free.action is None and not free.choice_ids


def test_liars_dice_played_by_a_spelled_choice_has_no_invalid_bid(engine, tiny):
    """The real LiarsDice through the generic reader: every reply of a spelling policy is a
    legal bid or call, taken by the env; the game loop plays the name it spelled."""
    from spiral_games.config.choices import ActionFormat
    from spiral_games.config.schema import GameConfig
    from spiral_games.play.loop import GameJob, play_games
    from spiral_games.play.observed import ObservedRandomPolicy
    from spiral_games.play.registry import build_rules

    cfg = GameConfig(
        env={
            "_target_": "spiral_games.play.observed.ObservedTextArenaGame",
            "env_id": "LiarsDice-v0",
        },
        action_format=ActionFormat.choice,
        prompt_style="short",
    )
    rules = build_rules("LiarsDice-v0", cfg)
    player = policy(engine, tiny, 2.0, games=("LiarsDice-v0",), spell=True, max_model_len=4096)
    episodes = play_games(
        [GameJob(rules, seed, (player, ObservedRandomPolicy(seed))) for seed in range(3)]
    )
    mine = [t for e in episodes for t in e.turns if t.role == 0]
    assert mine and all(t.valid and t.action is not None for t in mine)
    assert all(t.action == "[Call]" or t.action.startswith("[Bid: ") for t in mine)
    assert any(len(t.response_ids) > 1 for t in mine)  # a bid spelled over several tokens
    assert all(e.invalid_role is None for e in episodes)
