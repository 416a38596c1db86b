"""Data that flows between parts: small frozen dataclasses shared by engines, games and learner."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings honoured by every engine. The numbers come from the config
    (rollout.*, eval.*, the model's reply budget), so they have no defaults here."""

    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...] = ()
    seed: int | None = None  # this request's own seed; None: the engine's running stream

    @classmethod
    def greedy(cls, max_tokens: int) -> SamplingParams:
        """The most likely reply (temperature 0), at most `max_tokens` long."""
        return cls(temperature=0.0, top_p=1.0, max_tokens=max_tokens)


@dataclass(frozen=True)
class Generation:
    """One sampled completion of one prompt."""

    prompt_ids: tuple[int, ...]  # [P]
    token_ids: tuple[int, ...]  # [T] sampled tokens, EOS included when produced
    logprobs: tuple[float, ...]  # [T] behaviour log-prob of each sampled token
    text: str  # decoded `token_ids` without special tokens
    truncated: bool  # True when max_tokens ended the sample before EOS or a stop string
    # A masked choice (`Engine.choose`): the reply is one of these tokens, and `logprobs` is
    # its log-prob among them alone at the sampling temperature (the policy that played it)
    choice_ids: tuple[int, ...] = ()  # [C]
    choice_logprobs: tuple[float, ...] = ()  # [C] the distribution the reply was drawn from


@dataclass(frozen=True)
class Observation:
    """What a policy sees when it must act: one role of one game at one turn."""

    game: str
    role: int  # the seat to act, 0 or 1
    text: str  # the game's observation for `role` (prompting wraps it)
    legal_actions: tuple[str, ...] | None  # None when the game cannot enumerate them
    state: object = None  # game-specific structured view for scripted opponents
    # the present position alone, without the move history (GameEnv.current_state); the
    # `short` prompt shows it instead of `text` where the game has one
    position: str | None = None
    # what a masked choice's reply starts with, before the choice (GameEnv.reply_prefix)
    reply_prefix: str | None = None


@dataclass(frozen=True)
class PolicyOutput:
    """A policy's answer to one observation; LLM policies also fill the token fields."""

    text: str  # raw response, parsed by the game's action parser
    prompt_ids: tuple[int, ...] = ()  # [P]
    token_ids: tuple[int, ...] = ()  # [T]
    logprobs: tuple[float, ...] = ()  # [T] behaviour log-probs
    truncated: bool = False
    context_overflow: bool = False  # the prompt no longer fits the model: the game is a draw
    context_truncated: bool = False  # the observation's middle was cut to fit the context
    version: int = 0  # weights version that generated it (LLM policies)
    choice_ids: tuple[int, ...] = ()  # [C] a masked choice: the tokens it chose among
    choice_logprobs: tuple[float, ...] = ()  # [C] the probabilities it was drawn with (logs)
    # a spelled choice (LLMPolicy(spell=True)): the legal action whose name it spelled
    action: str | None = None


@dataclass(frozen=True)
class ParsedAction:
    """Result of parsing a raw response: the env action, or why there is none."""

    action: str | None
    reason: str = ""  # why the response is invalid, when `action` is None
    lenient: bool = False  # taken from a mention, not a \boxed{} answer (action_format=lenient)


@dataclass(frozen=True)
class StepResult:
    """The env's verdict on one action."""

    valid: bool
    reason: str = ""  # the env's explanation of an invalid move


@dataclass(frozen=True)
class Turn:
    """One policy call inside an episode."""

    role: int
    observation: str
    response: str
    action: str | None  # the parsed action sent to the env; None when parsing failed
    valid: bool
    invalid_reason: str = ""
    prompt_ids: tuple[int, ...] = ()  # [P]
    response_ids: tuple[int, ...] = ()  # [T]
    logprobs: tuple[float, ...] = ()  # [T]
    truncated: bool = False
    context_truncated: bool = False
    lenient: bool = False  # the action was read from a mention, not a \boxed{} answer
    version: int = 0  # weights version that generated the response
    choice_ids: tuple[int, ...] = ()  # [C] action_format=choice: the legal actions' tokens


class GameEnd(StrEnum):
    """How a game ended (`Episode.end`); `Episode.reason` says it in words."""

    FINISHED = "finished"  # the game's own rules ended it
    INVALID_MOVE = "invalid_move"  # a seat's invalid move ended it (`Episode.invalid_role`)
    CONTEXT_OVERFLOW = "context_overflow"  # the history outgrew the model context: a draw
    TURN_LIMIT = "turn_limit"  # `max_turns` reached: a draw
    ABANDONED = "abandoned"  # a player left before the end (interactive play): no result, 0/0


@dataclass(frozen=True)
class Episode:
    """One finished game, with everything the learner and the transcripts need."""

    game: str
    seed: int
    turns: tuple[Turn, ...]
    returns: tuple[float, float]  # per role
    reason: str  # how the game ended
    version: int = 0  # weights version when it started (each turn records its own)
    invalid_role: int | None = None  # the role whose invalid move ended the game, if any
    trained_roles: tuple[int, ...] = (0, 1)  # seats played by the learning policy
    opponent: str = ""  # name of the fixed opponent in the other seat ("" in self-play)
    end: GameEnd = GameEnd.FINISHED

    def to_json(self) -> dict:
        """A JSON-serialisable transcript (token ids omitted: they are training data)."""
        return {
            "game": self.game,
            "seed": self.seed,
            "version": self.version,
            "returns": list(self.returns),
            "reason": self.reason,
            "end": self.end.value,
            "invalid_role": self.invalid_role,
            "trained_roles": list(self.trained_roles),
            "opponent": self.opponent,
            "turns": [
                {
                    "role": t.role,
                    "prompt": t.observation,
                    "response": t.response,
                    "action": t.action,
                    "valid": t.valid,
                    "lenient": t.lenient,
                    "invalid_reason": t.invalid_reason,
                    "truncated": t.truncated,
                    "version": t.version,
                }
                for t in self.turns
            ],
        }


@dataclass(frozen=True)
class Sample:
    """One training sample: a trained role's turn with its advantage."""

    prompt_ids: tuple[int, ...]  # [P]
    response_ids: tuple[int, ...]  # [T]
    logprobs: tuple[float, ...]  # [T] behaviour log-probs (for the PPO ratio)
    advantage: float
    game: str
    role: int
    version: int  # weights version that generated the response
    # [C] a masked choice: the response token's log-prob is taken among these tokens only
    choice_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class TrainBatch:
    """The samples of one optimizer step, with the step they belong to."""

    samples: tuple[Sample, ...]
    step: int
