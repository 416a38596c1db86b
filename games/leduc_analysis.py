"""A policy's Leduc exploitability, for `eval/leduc/*`: its strategy at the 288 information
sets, stated (a `ScoringPolicy`: exact) or estimated from sampled replies (with a bootstrap
standard error), measured exactly by games/leduc_tree.py."""

from __future__ import annotations

import random
import statistics
from fractions import Fraction
from typing import cast

from games.leduc import LeducPokerGame, info_set
from games.leduc_tree import (
    INFO_SETS,
    RANKS,
    InfoSet,
    Outcome,
    Prob,
    Strategy,
    best_response_values,
    exploitability,
    legal_moves,
)
from spiral_games.config.choices import InvalidMove
from spiral_games.errors import GameError
from spiral_games.play.loop import GameRules, GameSession, replayed
from spiral_games.play.policy import Policy, scores_actions
from spiral_games.types import Observation, PolicyOutput

# info set -> how many replies played each legal move (legal_moves' order), then invalid ones
ReplyCounts = dict[InfoSet, tuple[int, ...]]
SEED_SEARCH = 1000  # seeds tried for a deal of each card pair


def _require_leduc(rules: GameRules) -> LeducPokerGame:
    env = rules.make_env()
    if not isinstance(env, LeducPokerGame):
        raise GameError(f"game {rules.name!r} is not Leduc Hold'em (games.leduc.LeducPokerGame)")
    return env


def invalid_outcome(rules: GameRules) -> Outcome:
    """Chips of (offender, other player) for an invalid reply under `rules`: the rewards play
    gives it, times `chips_per_reward` (13), so the measure scores it as training does. With
    invalid_move=retry each invalid reply counts as the last one (-1/+1), as in Kuhn."""
    scale = _require_leduc(rules).chips_per_reward
    game = rules.config
    if game.invalid_move == InvalidMove.penalty:
        return (game.invalid_penalty * scale, game.invalid_opponent_reward * scale)
    return (-scale, scale)


def _deal_seeds(rules: GameRules, seed: int) -> dict[tuple[int, str, str], int]:
    """(seat, its card, the public card or "") -> the first seed from `seed` dealing them."""
    env = _require_leduc(rules)
    wanted = {(s, c, p) for s in (0, 1) for c in RANKS for p in ("", *RANKS)}
    found: dict[tuple[int, str, str], int] = {}
    for candidate in range(seed, seed + SEED_SEARCH):
        env.reset(candidate)
        for s in (0, 1):
            for public in ("", env.public):
                found.setdefault((s, env.cards[s], public), candidate)
        if len(found) == len(wanted):
            return found
    raise GameError(f"no seeds in [{seed}, {seed + SEED_SEARCH}) deal {wanted - set(found)}")


def _session_at(rules: GameRules, info: InfoSet, seed: int) -> GameSession:
    return replayed(rules, seed, [f"[{m}]" for m in info.history])


def observations(rules: GameRules, seed: int) -> dict[InfoSet, tuple[int, Observation]]:
    """Each information set's seed and the observation play gives there: a real game of
    `rules`, dealt the acting seat's card (and public card), played to the betting."""
    seeds = _deal_seeds(rules, seed)
    out = {}
    for info in INFO_SETS:
        deal = seeds[(info.seat, info.card, info.public)]
        observation = cast(Observation, _session_at(rules, info, deal).pending())
        if info_set(observation) != info:
            raise GameError(f"seed {deal} reached {info_set(observation)}, not {info}")
        out[info] = (deal, observation)
    return out


def _classify(rules: GameRules, info: InfoSet, seed: int, reply: PolicyOutput) -> int:
    """The index of the legal move the reply plays at `info`, as play parses it; len(legal
    moves) for an invalid reply (or one that outgrew the context)."""
    session = _session_at(rules, info, seed)
    session.submit(cast(Observation, session.pending()), reply)
    moves = legal_moves(info.history)
    if len(session.turns) == len(info.history) or not session.turns[-1].valid:
        return len(moves)
    return moves.index(str(session.turns[-1].action).strip("[]"))


def estimate_strategy(policy: Policy, rules: GameRules, samples: int, seed: int) -> ReplyCounts:
    """`policy`'s replies at each of the 288 information sets, `samples` each, all asked in one
    `act` call with the observations play gives and parsed as play parses them."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    asked = observations(rules, seed)
    replies = policy.act([asked[info][1] for info in INFO_SETS for _ in range(samples)])
    if len(replies) != samples * len(INFO_SETS):
        raise GameError(f"{type(policy).__name__} answered {len(replies)} of {len(asked)}")
    counts: ReplyCounts = {}
    for k, info in enumerate(INFO_SETS):
        tally = [0] * (len(legal_moves(info.history)) + 1)
        for reply in replies[k * samples : (k + 1) * samples]:
            tally[_classify(rules, info, asked[info][0], reply)] += 1
        counts[info] = tuple(tally)
    return counts


def strategy_from_counts(counts: ReplyCounts) -> dict[InfoSet, tuple[Prob, ...]]:
    """The empirical strategy of reply counts, as exact Fractions."""
    return {info: tuple(Fraction(n, sum(c)) for n in c) for info, c in counts.items()}


def bootstrap_exploitability(
    counts: ReplyCounts, *, invalid: Outcome, resamples: int, seed: int
) -> tuple[float, float]:
    """(exploitability of the counts' frequencies, its bootstrap standard error): each
    information set's replies are resampled with replacement `resamples` times."""
    value = float(exploitability(strategy_from_counts(counts), invalid=invalid))
    rng = random.Random(seed)
    replicates = []
    for _ in range(resamples):
        resampled: dict[InfoSet, tuple[Prob, ...]] = {}
        for info, c in counts.items():
            n = sum(c)
            drawn = rng.choices(range(len(c)), weights=c, k=n)
            resampled[info] = tuple(drawn.count(k) / n for k in range(len(c)))
        replicates.append(float(exploitability(resampled, invalid=invalid)))
    return value, statistics.stdev(replicates) if len(replicates) > 1 else 0.0


def stated_strategy(policy: Policy, rules: GameRules, seed: int) -> Strategy:
    """The strategy `policy` states (`action_probabilities`) at the 288 information sets, asked
    with the observations play gives; what its legal moves' probabilities leave of 1 is its
    chance of an invalid reply."""
    if not scores_actions(policy, rules.name):
        raise GameError(f"{type(policy).__name__} does not state its action probabilities")
    asked = observations(rules, seed)
    stated = policy.action_probabilities([asked[info][1] for info in INFO_SETS])
    strategy: dict[InfoSet, tuple[Prob, ...]] = {}
    for info, probs in zip(INFO_SETS, stated, strict=True):
        legal = [probs.get(f"[{m}]", 0) for m in legal_moves(info.history)]
        rest = 1 - sum(legal)  # floats (a model's probabilities) may round a little below 0
        strategy[info] = (*legal, max(rest, 0.0) if isinstance(rest, float) else rest)
    return strategy


class LeducExploitability:
    """Measures a policy's exploitability in Leduc Hold'em for `eval/leduc/*`. A policy that
    states its action probabilities (`ScoringPolicy`: the scripted players, a model answering
    by masked choice) is measured exactly (standard error 0); any other from `samples` sampled
    replies per information set (288 x `samples` replies), with a standard error from
    `bootstrap` resamples. `exact=False` samples every policy."""

    def __init__(self, samples: int = 4, bootstrap: int = 200, exact: bool = True) -> None:
        if samples < 1 or bootstrap < 2:
            raise ValueError(f"need samples >= 1 and bootstrap >= 2, got {samples}, {bootstrap}")
        self.samples = samples
        self.bootstrap = bootstrap
        self.exact = exact

    def measure(self, policy: Policy, rules: GameRules, seed: int) -> dict[str, float]:
        """exploitability (chips per hand, NashConv / 2) and its standard error, each seat's
        best-response value (player 0, player 1) and the mean share of invalid replies."""
        invalid = invalid_outcome(rules)
        if self.exact and scores_actions(policy, rules.name):
            strategy = stated_strategy(policy, rules, seed)
            value, se = float(exploitability(strategy, invalid=invalid)), 0.0
        else:
            counts = estimate_strategy(policy, rules, self.samples, seed)
            value, se = bootstrap_exploitability(
                counts, invalid=invalid, resamples=self.bootstrap, seed=seed
            )
            strategy = strategy_from_counts(counts)
        first, second = best_response_values(strategy, invalid=invalid)
        return {
            "exploitability": value,
            "exploitability_se": se,
            "best_response_first": float(first),
            "best_response_second": float(second),
            "invalid_share": sum(float(s[-1]) for s in strategy.values()) / len(INFO_SETS),
        }
