"""Demonstrations for the imitation baseline: the scripted expert plays the selected games, and
each of its moves is rendered as the model's reply to the prompt the model would see there."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spiral_games.config.choices import ActionFormat
from spiral_games.config.schema import RunConfig
from spiral_games.errors import ConfigError, GameError
from spiral_games.llm.encoder import PromptEncoder, game_prompt_styles
from spiral_games.play.loop import play_games
from spiral_games.play.parsing import extract_boxed, match_action
from spiral_games.play.policy import Policy, reseed_policies
from spiral_games.play.registry import build_opponent, build_rules
from spiral_games.play.rollout import plan_jobs
from spiral_games.types import Episode, Observation, PolicyOutput


class Demonstrator:
    """Plays each game's expert, and answers with the expert's move as the model would give
    it: the prompt's token ids exactly as `LLMPolicy` sends them to its engine (the same
    `PromptEncoder`), and the reply's: the move's token in a masked choice, or else the
    expert's text and EOS. A move the model could not give there (no room in the context or
    the reply budget) is played without tokens, and is not trained on."""

    def __init__(self, experts: Mapping[str, Policy], encoder: PromptEncoder, eos_id: int) -> None:
        self.experts = dict(experts)
        self.encoder = encoder
        self.eos_id = eos_id

    def reseed(self, seed: int) -> None:
        """Restart every expert's choices from `seed` (`reseed_policies`)."""
        reseed_policies(self.experts, seed)

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        by_game: dict[str, list[int]] = {}
        for i, obs in enumerate(observations):
            by_game.setdefault(obs.game, []).append(i)
        outputs: dict[int, PolicyOutput] = {}
        for game, indices in by_game.items():
            replies = self.experts[game].act([observations[i] for i in indices])
            for i, reply in zip(indices, replies, strict=True):
                outputs[i] = self.rendered(observations[i], reply.text)
        return [outputs[i] for i in range(len(observations))]

    def rendered(self, obs: Observation, text: str) -> PolicyOutput:
        """The expert's reply `text` at `obs`, with the tokens the model would give for it."""
        choices = self.encoder.choices(obs)
        prompt, cut = self.encoder.encode(obs, choices)
        if not self.encoder.fits(prompt, choices):
            return PolicyOutput(text=text)
        if choices:
            legal = obs.legal_actions or ()
            action = match_action(extract_boxed(text) or text, legal)
            if action is None:
                raise GameError(
                    f"The expert of {obs.game!r} replied {text!r}, which names none of the "
                    f"legal actions {list(legal)}: it cannot be rendered as a masked choice."
                )
            token = choices[legal.index(action)]
            reply: Sequence[int] = (token,)
            text = self.encoder.tokenizer.decode([token])  # what an engine's choice reads
        else:
            reply = [*self.encoder.tokenizer(text, add_special_tokens=False)["input_ids"]]
            reply.append(self.eos_id)
            if len(reply) > self.encoder.reply_budget(choices):
                return PolicyOutput(text=text)
        return PolicyOutput(
            text=text,
            prompt_ids=tuple(prompt),
            token_ids=tuple(reply),
            logprobs=(0.0,) * len(reply),  # no behaviour policy: the `sft` loss ignores them
            context_truncated=cut,
            choice_ids=choices,
        )


def demonstrator(cfg: RunConfig, tokenizer: Any) -> Demonstrator:
    """The run's `Demonstrator`: `sft.expert` of every game, rendering for `tokenizer` with the
    prompt style, action format, context and reply budget the rollout workers play with."""
    missing = [name for name, game in cfg.games.items() if cfg.sft.expert not in game.opponents]
    if missing:
        raise ConfigError(
            f"sft.expert={cfg.sft.expert!r} is no fixed opponent of {', '.join(missing)} "
            "(games.<name>.opponents): the imitation baseline needs a scripted player to "
            "imitate in every selected game. Drop those games or name another sft.expert."
        )
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"The tokenizer of model.name={cfg.model.name} has no EOS token, which ends every "
            "free-text reply the imitation baseline trains on."
        )
    experts = {
        name: build_opponent(name, game, cfg.sft.expert, seed=cfg.seed)
        for name, game in cfg.games.items()
    }
    encoder = PromptEncoder(
        tokenizer,
        game_prompt_styles(cfg.games),
        cfg.rollout.max_model_len,
        cfg.reply_budget(),
        on_context_overflow=cfg.rollout.on_context_overflow,
        choice_games=[n for n, g in cfg.games.items() if g.action_format == ActionFormat.choice],
    )
    return Demonstrator(experts, encoder, int(tokenizer.eos_token_id))


def play_demonstrations(cfg: RunConfig, tokenizer: Any) -> list[Episode]:
    """`sft.demonstrations` games over the selected games (by `games.<g>.weight`): the expert
    against itself (both seats are its own), or against `sft.against` in a random seat (only
    the expert's seat is its own: `Episode.trained_roles`). Deterministic from `cfg.seed`."""
    teacher = demonstrator(cfg, tokenizer)
    teacher.reseed(cfg.seed)
    opponents = None
    if cfg.sft.against != cfg.sft.expert:
        opponents = {
            name: build_opponent(name, game, cfg.sft.against, seed=cfg.seed)
            for name, game in cfg.games.items()
        }
        reseed_policies(opponents, cfg.seed + 1000)
    rules = {name: build_rules(name, game) for name, game in cfg.games.items()}
    weights = {name: game.weight for name, game in cfg.games.items()}
    jobs = plan_jobs(
        rules,
        weights,
        cfg.sft.demonstrations,
        cfg.seed,
        teacher,
        opponents,
        opponent_name="" if opponents is None else cfg.sft.against,
    )
    return play_games(jobs, concurrency=cfg.rollout.concurrent_games)
