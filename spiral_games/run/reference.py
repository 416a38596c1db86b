"""Reference lines for every evaluation: the fixed opponents (a uniform random player, the
game's scripted expert) scored as players on the model's own measures, games, seeds and seats,
so that "better than random" is read off the table. Pure logic: scripted policies only."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from spiral_games.config.schema import RunConfig
from spiral_games.errors import ConfigError
from spiral_games.play.loop import GameJob, GameRules, NoSeat, play_games
from spiral_games.play.policy import Policy, reseed_policies, reseed_policy
from spiral_games.play.registry import GameAnalysis, build_analysis, build_opponent, build_rules
from spiral_games.play.rollout import EvalShare, evaluation_jobs
from spiral_games.run.metrics import eval_metrics
from spiral_games.types import Episode

PREFIX = "ref"  # ref/<player>/<game>/<opponent>/win_rate, ref/<player>/<game>/<analysis key>


@dataclass
class ReferenceLines:
    """The reference players (`players[(game, name)]`), the opponents they face and the
    analyses they are measured by: the same objects a rollout worker builds for the model."""

    rules: dict[str, GameRules]
    players: dict[tuple[str, str], Policy]
    opponents: dict[tuple[str, str], Policy]
    analyses: dict[tuple[str, str], GameAnalysis]

    @property
    def names(self) -> list[str]:
        return sorted({name for _, name in self.players})

    def measure(self, shares: Sequence[EvalShare], seed: int) -> dict[str, float]:
        """Each reference player in the model's place: the evaluation's games (the shares the
        workers played, same seeds and seats) and the analyses (`seed`), as `ref/<player>/...`
        metrics named like the model's `eval/...` ones."""
        out: dict[str, float] = {}
        for name in self.names:
            episodes: list[Episode] = []
            for share in shares:
                episodes += play_games(self.jobs(name, share))
            for key, value in eval_metrics(episodes).items():
                out[f"{PREFIX}/{name}/{key.removeprefix('eval/')}"] = value
            for (game, _), analysis in sorted(self.analyses.items()):
                player = self.players.get((game, name))
                if player is None:
                    continue
                reseed_policy(player, seed)
                for key, value in analysis.measure(player, self.rules[game], seed).items():
                    out[f"{PREFIX}/{name}/{game}/{key}"] = float(value)
        return out

    def jobs(self, name: str, share: EvalShare) -> list[GameJob]:
        """The jobs a worker plays for `share`, with player `name` in the model's seat (games
        it has no player for are left out)."""
        reseed_policies(self.opponents, share.seed)
        jobs = evaluation_jobs(
            self.rules,
            self.opponents,
            share.games,
            share.seed,
            NoSeat(),  # the model's seat, filled below
            first_seat=share.first_seat,
        )
        players = {game: p for (game, n), p in self.players.items() if n == name}
        for k, game in enumerate(sorted(players)):
            reseed_policy(players[game], share.seed + 10_000 + k)
        out = []
        for job in jobs:
            mine = players.get(job.rules.name)
            if mine is None:
                continue
            seat = job.trained_roles[0]
            seats = (mine, job.seats[1]) if seat == 0 else (job.seats[0], mine)
            out.append(dataclasses.replace(job, seats=seats))
        return out


def reference_lines(cfg: RunConfig) -> ReferenceLines | None:
    """The reference players `eval.reference` names (each a fixed opponent of some game), or
    None when there is nothing to evaluate."""
    if not cfg.eval.enabled or not cfg.eval.reference:
        return None
    for name in cfg.eval.reference:
        if not any(name in game.opponents for game in cfg.games.values()):
            known = sorted({o for game in cfg.games.values() for o in game.opponents})
            raise ConfigError(
                f"eval.reference names {name!r}, which no game has as an opponent. Use some of "
                f"{', '.join(known) or 'none'} (games.<game>.opponents), or eval.reference=[]."
            )
    rules = {name: build_rules(name, game) for name, game in cfg.games.items()}
    players = {
        (game, name): build_opponent(game, gcfg, name, seed=cfg.seed)
        for game, gcfg in cfg.games.items()
        for name in cfg.eval.reference
        if name in gcfg.opponents
    }
    opponents = {
        (game, name): build_opponent(game, gcfg, name, seed=cfg.seed)
        for game, gcfg in cfg.games.items()
        for name in cfg.eval.opponents
        if name in gcfg.opponents
    }
    analyses = {
        (game, key): build_analysis(game, gcfg, key)
        for game, gcfg in cfg.games.items()
        for key in gcfg.analyses
    }
    return ReferenceLines(rules, players, opponents, analyses)


def reference_of(metrics: Mapping[str, float], player: str, key: str) -> float | None:
    """The reference value for the model's metric `key` (`eval/<game>/...`) from `metrics`."""
    return metrics.get(f"{PREFIX}/{player}/{key.removeprefix('eval/')}")
