"""A reply that is a masked choice among the legal actions (`action_format=choice`), pure logic.

Each legal action is named by the first token of its name ("[call]" -> "call"); the model's
reply is one token drawn from its own next-token distribution renormalised over those tokens.
So every reply is a legal move the model picked, a decision costs one generated token, and the
probability of each action is exact: the policy at that position, not an estimate from samples.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def action_name(action: str) -> str:
    """What names an action in a prompt and a choice: "[call]" -> "call"."""
    return action.strip().removeprefix("[").removesuffix("]").strip()


# vLLM returns the log-probs of at most this many named tokens (MAX_LOGPROB_TOKEN_IDS)
MAX_CHOICES = 128


def choice_tokens(tokenizer: Any, legal: Sequence[str]) -> tuple[int, ...] | None:
    """The token that names each legal action (its name's first token), in `legal`'s order;
    None when two actions start with the same token (one token cannot tell them apart), or
    there are more than MAX_CHOICES: such a state is answered in free text."""
    if len(legal) > MAX_CHOICES:
        return None
    tokens = []
    for action in legal:
        ids = tokenizer(action_name(action), add_special_tokens=False)["input_ids"]
        if not ids:
            return None
        tokens.append(int(ids[0]))
    return tuple(tokens) if len(set(tokens)) == len(tokens) else None


def masked_choice(tokenizer: Any, legal: Sequence[str]) -> tuple[str, tuple[int, ...]] | None:
    """How a masked choice among `legal` is made: (the text the reply starts with, written for
    the model; the token that names each action after it). Each action is named by its first
    token ("", `choice_tokens`) where those differ; else, where the names' tokens share a
    beginning, by the first token after it ("[col 0]" ... "[col 6]": the reply starts "col "
    and the choice is "0" ... "6"). None where neither tells the actions apart (LiarsDice's
    "[Bid: 3, 4]" and "[Bid: 3, 5]"): answered in free text."""
    tokens = choice_tokens(tokenizer, legal)
    if tokens is not None:
        return "", tokens
    if not 1 < len(legal) <= MAX_CHOICES:
        return None
    names = [tokenizer(action_name(a), add_special_tokens=False)["input_ids"] for a in legal]
    shared = 0
    while shared < min(len(n) for n in names) - 1 and len({n[shared] for n in names}) == 1:
        shared += 1
    after = tuple(int(n[shared]) for n in names)
    if shared == 0 or len(set(after)) != len(after):
        return None
    return tokenizer.decode(names[0][:shared]), after


def behaviour_logprob(raw: Sequence[float], temperature: float, pick: int) -> float:
    """The log-prob the learner is given for the choice `pick`: under the policy it was drawn
    from, or under the model's own (temperature 1) after a greedy pick, as the learner takes a
    choice at the rollout temperature or at 1 when that is 0 (`LearnerSpec.choice_temperature`)."""
    return choice_logprobs(raw, temperature or 1.0)[pick]


def choice_logprobs(raw: Sequence[float], temperature: float) -> list[float]:
    """The policy of a masked choice: from the model's log-probs of the choice tokens (over the
    whole vocabulary), the distribution among them at `temperature` (0: all mass on the first
    most likely). The learner takes a choice's log-prob at the rollout temperature too, so
    the policy that plays is the policy that is trained (`token_logprobs`)."""
    top = max(raw)
    if temperature == 0:
        best = raw.index(top)
        return [0.0 if i == best else -math.inf for i in range(len(raw))]
    scaled = [(x - top) / temperature for x in raw]
    log_z = math.log(sum(math.exp(x) for x in scaled))
    return [x - log_z for x in scaled]


def draw(policy: Sequence[float], rng: random.Random) -> int:
    """The index of one choice drawn from `policy` (log-probs, as `choice_logprobs` gives)."""
    return rng.choices(range(len(policy)), weights=[math.exp(x) for x in policy])[0]


def spelled_names(tokenizer: Any, legal: Sequence[str]) -> tuple[tuple[int, ...], ...] | None:
    """Each legal action's name as tokens, for a choice made token by token (`Spelling`):
    "Bid: 3, 4" -> "Bid", ":", " ", "3", ... A name that is the beginning of another ends in the
    end-of-sequence token, so that stopping there is one of the choices. None where two
    actions have one name, such a set meets a tokenizer without an end token, or a branch
    offers more than MAX_CHOICES tokens (as `choice_tokens`)."""
    names = [tuple(tokenizer(action_name(a), add_special_tokens=False)["input_ids"]) for a in legal]
    if not names or not all(names) or len(set(names)) != len(names):
        return None
    inner = {n for n in names if any(len(m) > len(n) and m[: len(n)] == n for m in names)}
    if inner:
        end = tokenizer.eos_token_id
        if end is None:
            return None
        names = [(*n, int(end)) if n in inner else n for n in names]
    branches: dict[tuple[int, ...], set[int]] = {}
    for name in names:
        for at in range(len(name)):
            branches.setdefault(name[:at], set()).add(name[at])
    if max(len(b) for b in branches.values()) > MAX_CHOICES:
        return None
    return tuple(tuple(int(t) for t in n) for n in names)


@dataclass
class Spelling:
    """A legal action chosen by spelling its name, for actions no one token tells apart
    (LiarsDice's bids `[Bid: q, f]`): at each token where the legal names branch, a masked
    choice among the tokens that go on to one of them (`options`); where only one token does,
    that token, written for the model (probability 1). The action's probability is the
    product of its choices'. Every spelled reply is a legal action."""

    names: tuple[tuple[int, ...], ...]  # `spelled_names`, in the legal actions' order
    path: list[int] = field(default_factory=list)  # the tokens spelled so far
    logprobs: list[float] = field(default_factory=list)  # each one's log-prob (0: written)

    def options(self) -> tuple[int, ...]:
        """The tokens that go on from `path` to a legal name, in the names' order."""
        at, out = len(self.path), []
        for name in self.names:
            if len(name) > at and list(name[:at]) == self.path and name[at] not in out:
                out.append(name[at])
        return tuple(out)

    def next_choice(self) -> tuple[int, ...]:
        """Writes every token that is the only way on, and returns the tokens of the next
        choice; () once a whole name is spelled (`chosen`)."""
        while len(options := self.options()) == 1:
            self.path.append(options[0])
            self.logprobs.append(0.0)
        return options

    def take(self, token: int, logprob: float) -> None:
        """Adds the token a choice drew, with its log-prob."""
        if token not in self.options():
            raise ValueError(f"token {token} goes on to no legal name from {self.path}")
        self.path.append(token)
        self.logprobs.append(logprob)

    @property
    def chosen(self) -> int | None:
        """The index of the action spelled, once its whole name is; else None."""
        path = tuple(self.path)
        return self.names.index(path) if path in self.names else None
