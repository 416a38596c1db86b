"""The opponent league (`rollout.opponents=league`): who the policy trains against, and how good
each opponent is. Pure logic: no Ray, vLLM or torch.

Members are snapshots of the policy (`step_000004`: its weights after 4 steps) and the fixed
opponents named in `league.fixed` (scripted policies such as `random`). The current policy and
every member carry a rating from openskill's Plackett-Luce model (a maintained TrueSkill-like
model: mean `mu` and uncertainty `sigma`, 25 and 25/3 at the start), updated from every league
game in episode order. A snapshot starts from the current policy's rating.

Each training game is self-play with probability `self_play`; otherwise its opponent is drawn
from the members. `pfsp` (prioritised fictitious self-play, AlphaStar's "hard" weighting)
weights a member by P(it beats the current policy)^power, estimated from its results against
the current policy: wins + draws/2 + 1 over games + 2 (a new member starts at 1/2), with every
count decayed by `decay` once per step so old results fade as the policy moves on.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from spiral_games.config.choices import LeagueSampling
from spiral_games.config.schema import LeagueConfig
from spiral_games.errors import ConfigError
from spiral_games.types import Episode

CURRENT = "current"  # the rating of the policy being trained
CHECKPOINT, FIXED = "checkpoint", "fixed"


def member_name(step: int) -> str:
    """The league name of the policy snapshot taken after `step` training steps."""
    return f"step_{step:06d}"


@dataclass(frozen=True)
class LeagueMember:
    """One opponent in the pool: a policy snapshot (`checkpoint`) or a scripted `fixed` one."""

    name: str
    kind: str  # CHECKPOINT | FIXED
    step: int = 0  # the training step a snapshot was taken after (0 for fixed opponents)


@dataclass(frozen=True)
class LeagueDraw:
    """What a rollout worker draws each training game's opponent from (sent with a collect)."""

    self_play: float
    members: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()

    def sample(self, rng: random.Random) -> str | None:
        """A member's name, or None for a self-play game."""
        if not self.members or rng.random() < self.self_play:
            return None
        return rng.choices(self.members, weights=self.weights)[0]

    def probabilities(self) -> dict[str, float]:
        """Each member's chance to be a game's opponent (self-play under CURRENT)."""
        total = sum(self.weights)
        league = 1.0 - self.self_play if self.members else 0.0
        out = {CURRENT: 1.0 - league}
        out.update({m: league * w / total for m, w in zip(self.members, self.weights, strict=True)})
        return out


@dataclass
class Record:
    """A member's decayed results against the current policy, from the member's side."""

    wins: float = 0.0
    draws: float = 0.0
    losses: float = 0.0

    @property
    def games(self) -> float:
        return self.wins + self.draws + self.losses

    def beats_current(self) -> float:
        """P(member beats the current policy), draws half, smoothed towards 1/2."""
        return (self.wins + 0.5 * self.draws + 1.0) / (self.games + 2.0)


class League:
    """Members, their ratings and results; `draw` says who plays whom, `record` rates games."""

    def __init__(self, cfg: LeagueConfig) -> None:
        from openskill.models import PlackettLuce

        self.cfg = cfg
        self.model = PlackettLuce()
        self.members: list[LeagueMember] = [LeagueMember(name, FIXED) for name in cfg.fixed]
        start = self.model.rating()
        self.ratings: dict[str, tuple[float, float]] = {
            name: (start.mu, start.sigma) for name in (CURRENT, *cfg.fixed)
        }
        self.records: dict[str, Record] = {name: Record() for name in cfg.fixed}
        self.games_rated = 0

    # ---- membership --------------------------------------------------------------------------

    def snapshot_due(self, done: int) -> bool:
        """Whether the policy after `done` steps joins the league (never the last step's)."""
        return self.cfg.size > 0 and done % self.cfg.every == 0

    def add_snapshot(self, step: int) -> list[LeagueMember]:
        """Add the policy after `step` steps (rated as the current policy is now); returns the
        snapshots evicted to keep at most `size` (the oldest first)."""
        name = member_name(step)
        if name in self.records:
            raise ConfigError(f"league member {name} already exists")
        self.members.append(LeagueMember(name, CHECKPOINT, step))
        self.ratings[name] = self.ratings[CURRENT]
        self.records[name] = Record()
        snapshots = [m for m in self.members if m.kind == CHECKPOINT]
        evicted = snapshots[: max(0, len(snapshots) - self.cfg.size)]
        for member in evicted:
            self.members.remove(member)
            del self.ratings[member.name], self.records[member.name]
        return evicted

    def snapshots(self) -> list[LeagueMember]:
        return [m for m in self.members if m.kind == CHECKPOINT]

    # ---- sampling ----------------------------------------------------------------------------

    def draw(self) -> LeagueDraw:
        """The opponent distribution for the next collection."""
        names = tuple(m.name for m in self.members)
        if self.cfg.sampling == LeagueSampling.uniform:
            weights = tuple(1.0 for _ in names)
        else:
            power = self.cfg.pfsp_power
            weights = tuple(self.records[n].beats_current() ** power for n in names)
        return LeagueDraw(self.cfg.self_play, names, weights)

    # ---- results -----------------------------------------------------------------------------

    def record(self, episodes: Iterable[Episode]) -> None:
        """Rate every league game in `episodes` (in order) and count its result; decays the
        older results first (call once per training step)."""
        for rec in self.records.values():
            rec.wins, rec.draws, rec.losses = (
                rec.wins * self.cfg.decay,
                rec.draws * self.cfg.decay,
                rec.losses * self.cfg.decay,
            )
        for episode in episodes:
            name = episode.opponent
            if name not in self.records or len(episode.trained_roles) != 1:
                continue  # self-play, or a member evicted since the game was drawn
            seat = episode.trained_roles[0]
            mine, theirs = episode.returns[seat], episode.returns[1 - seat]
            rec = self.records[name]
            if theirs > mine:
                rec.wins += 1
            elif theirs == mine:
                rec.draws += 1
            else:
                rec.losses += 1
            self._rate(name, ranks=[0.0 if mine >= theirs else 1.0, 0.0 if theirs >= mine else 1.0])

    def _rate(self, member: str, ranks: list[float]) -> None:
        current = self.model.rating(*self.ratings[CURRENT])
        other = self.model.rating(*self.ratings[member])
        [[current], [other]] = self.model.rate([[current], [other]], ranks=ranks)
        self.ratings[CURRENT] = (current.mu, current.sigma)
        self.ratings[member] = (other.mu, other.sigma)
        self.games_rated += 1

    def metrics(self) -> dict[str, float]:
        """`league/*` for metrics.jsonl: every rating (mu and sigma), each member's chance to
        be drawn and its estimated P(beats current), the pool size and games rated so far."""
        out: dict[str, float] = {
            "league/size": float(len(self.members)),
            "league/games_rated": float(self.games_rated),
        }
        for name, (mu, sigma) in self.ratings.items():
            out[f"league/rating/{name}"] = mu
            out[f"league/rating_sigma/{name}"] = sigma
        for name, p in self.draw().probabilities().items():
            out[f"league/draw/{name}"] = p
        for name, rec in self.records.items():
            out[f"league/beats_current/{name}"] = rec.beats_current()
        return out

    # ---- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything `load_state_dict` needs for an exact resume (JSON-serialisable)."""
        return {
            "members": [[m.name, m.kind, m.step] for m in self.members],
            "ratings": {n: list(r) for n, r in self.ratings.items()},
            "records": {n: [r.wins, r.draws, r.losses] for n, r in self.records.items()},
            "games_rated": self.games_rated,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`'s output; the fixed opponents must match `league.fixed`."""
        members = [LeagueMember(str(n), str(k), int(s)) for n, k, s in state["members"]]
        fixed = [m.name for m in members if m.kind == FIXED]
        if fixed != list(self.cfg.fixed):
            raise ConfigError(
                f"The checkpoint's league has fixed opponents {fixed}, this run "
                f"league.fixed={list(self.cfg.fixed)}. Resume with the same league.fixed."
            )
        self.members = members
        self.ratings = {n: (float(r[0]), float(r[1])) for n, r in state["ratings"].items()}
        self.records = {n: Record(*map(float, r)) for n, r in state["records"].items()}
        self.games_rated = int(state["games_rated"])
