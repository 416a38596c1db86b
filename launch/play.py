"""Plays two seats against each other on the configured games: fixed opponents, the config's
model, or you at the terminal. Prints a results table (or, with a human seat, every move) and
writes transcripts:

    python launch/play.py +games=[nim] --seats=random,expert --episodes=20
    python launch/play.py +games=[kuhn] --seats=human,model model.name=runs/<run>/checkpoints/<step>
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from spiral_games.config.choices import EngineKind
from spiral_games.config.compose import compose_run_config
from spiral_games.errors import SpiralError

if TYPE_CHECKING:
    from spiral_games.actors.rollout_worker import RolloutWorker
    from spiral_games.config.schema import RunConfig
    from spiral_games.play.policy import Policy

REPO = Path(__file__).resolve().parents[1]
HUMAN, MODEL = "human", "model"
ENGINE_KEY = "rollout.engine"


def main(argv: list[str]) -> int:
    """Play the matches; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seats", default="random,random", help="seat 0,1: human, model or an opponent name"
    )
    parser.add_argument("--episodes", type=int, default=None, help="default: 1 with a human, 10")
    parser.add_argument("--out", default=None, help="transcripts dir (default: output_dir)")
    parser.add_argument(
        "--engine", choices=list(EngineKind), default=None, help="model seat (default: hf)"
    )
    args, overrides = parser.parse_known_args(argv)
    try:
        return _play(args, overrides)
    except SpiralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # during start-up; a game in progress is saved by play_watched
        print("\ninterrupted", file=sys.stderr)
        return 130


def _play(args: argparse.Namespace, overrides: list[str]) -> int:
    from spiral_games.errors import ConfigError

    seats = tuple(s.strip() for s in args.seats.split(","))
    if len(seats) != 2 or not all(seats):
        raise ConfigError(
            f"--seats={args.seats} names {len(seats)} seat(s): give two, e.g. --seats=human,model "
            f"(each {HUMAN}, {MODEL} or an opponent in games.<g>.opponents)."
        )
    episodes = args.episodes if args.episodes is not None else (1 if HUMAN in seats else 10)
    if episodes < 1:
        raise ConfigError(f"--episodes={episodes}: play at least one (--episodes=1).")
    engine_set = any(o.lstrip("+").startswith(f"{ENGINE_KEY}=") for o in overrides)
    if engine_set and args.engine:
        raise ConfigError(
            f"Give the engine once: --engine={args.engine} or {ENGINE_KEY}=..., not both."
        )
    if not engine_set:  # transformers starts in seconds; vLLM pays off for many games
        overrides = [*overrides, f"{ENGINE_KEY}={args.engine or EngineKind.hf}"]
    cfg = compose_run_config(REPO / "conf", overrides)
    _check_seats(cfg, seats)
    out_dir = Path(args.out or cfg.output_dir)
    worker = _model_worker(cfg) if MODEL in seats else None
    fixed: dict[str, Policy] = {MODEL: worker.eval_policy} if worker else {}
    try:
        if HUMAN in seats:
            return _play_with_people(cfg, seats, episodes, fixed, out_dir)
        _play_table(cfg, seats, episodes, fixed, out_dir)
        return 0
    finally:
        if worker:
            worker.close()


def _check_seats(cfg: RunConfig, seats: tuple[str, ...]) -> None:
    from spiral_games.errors import ConfigError

    for seat in seats:
        missing = [
            g for g, game in cfg.games.items() if seat not in (HUMAN, MODEL, *game.opponents)
        ]
        if missing:
            configured = "; ".join(f"{g}: {', '.join(cfg.games[g].opponents)}" for g in missing)
            raise ConfigError(
                f"Unknown seat {seat!r}. Use {HUMAN} (you, at this terminal), {MODEL} (the LLM "
                f"of model.name) or an opponent configured for every game ({configured}; "
                "games.<g>.opponents)."
            )


def _model_worker(cfg: RunConfig) -> RolloutWorker:
    """The config's model as evaluation plays it: a rollout worker's `eval_policy` (eval
    sampling, the games' prompt style and parsing, the reply budget) on `rollout.engine`."""
    from spiral_games.actors.rollout_worker import RolloutWorker, WorkerConfig
    from spiral_games.config.schema import format_lines
    from spiral_games.llm.models import resolve_configured

    print(f"loading model {cfg.model.name} ...", flush=True)
    resolved = resolve_configured(cfg.model)
    worker = RolloutWorker(WorkerConfig.from_run(cfg, resolved.path))
    print(
        f"model: {resolved.path} on {worker.engine_kind}, sampling at temperature "
        f"{cfg.eval.temperature}, top_p {cfg.eval.top_p} (eval.*)",
        *format_lines(cfg),
        sep="\n",
        flush=True,
    )
    return worker


def _seat_policies(
    cfg: RunConfig, game: str, seats: tuple[str, ...], fixed: dict[str, Policy]
) -> tuple[Policy, Policy]:
    """The policy in each seat: `fixed[seat]` (the person, the model), else the game's opponent
    of that name, seeded per seat."""
    from spiral_games.play.registry import build_opponent

    first, second = (
        fixed[seat] if seat in fixed else build_opponent(game, cfg.games[game], seat, cfg.seed + k)
        for k, seat in enumerate(seats)
    )
    return first, second


def _play_table(
    cfg: RunConfig, seats: tuple[str, ...], episodes: int, fixed: dict[str, Policy], out_dir: Path
) -> None:
    from spiral_games.play.loop import GameJob, play_games
    from spiral_games.play.registry import build_rules
    from spiral_games.report.transcripts import write_transcripts

    print(
        f"{'game':<14}{'seat0':<10}{'seat1':<10}{'P0 wins':>8}{'draws':>7}{'P1 wins':>8}"
        f"{'invalid':>8}{'turns':>7}"
    )
    for name, game in cfg.games.items():
        rules = build_rules(name, game)
        policies = _seat_policies(cfg, name, seats, fixed)
        jobs = [
            GameJob(rules, cfg.seed + k, policies, opponent=",".join(seats))
            for k in range(episodes)
        ]
        played = play_games(jobs, concurrency=cfg.eval.concurrency)
        write_transcripts(played, out_dir / "transcripts" / f"{name}.jsonl")
        p0 = sum(e.returns[0] > e.returns[1] for e in played)
        p1 = sum(e.returns[1] > e.returns[0] for e in played)
        invalid = sum(e.invalid_role is not None for e in played)
        turns = sum(len(e.turns) for e in played) / len(played)
        print(
            f"{name:<14}{seats[0]:<10}{seats[1]:<10}{p0:>8}{len(played) - p0 - p1:>7}"
            f"{p1:>8}{invalid:>8}{turns:>7.1f}"
        )
    print(f"transcripts: {out_dir / 'transcripts'}")


def _play_with_people(
    cfg: RunConfig, seats: tuple[str, ...], episodes: int, fixed: dict[str, Policy], out_dir: Path
) -> int:
    """Each game turn by turn at this terminal; each is appended to the game's transcript
    as soon as it ends, and a game left unfinished is saved marked `abandoned`."""
    from spiral_games.play.human import HumanPolicy, play_watched
    from spiral_games.play.loop import GameJob
    from spiral_games.play.registry import build_rules
    from spiral_games.report.transcripts import write_transcripts

    fixed = {**fixed, HUMAN: HumanPolicy(sys.stdin, sys.stdout)}
    alone = seats.count(HUMAN) == 1
    labels = tuple("you" if seat == HUMAN and alone else seat for seat in seats)
    for name, game in cfg.games.items():
        rules = build_rules(name, game)
        policies = _seat_policies(cfg, name, seats, fixed)
        path = out_dir / "transcripts" / f"{name}.jsonl"
        for k in range(episodes):
            print(
                f"\n##### {name}, game {k + 1} of {episodes}: Player 0 is {labels[0]}, "
                f"Player 1 is {labels[1]} #####",
                flush=True,
            )
            job = GameJob(rules, cfg.seed + k, policies, opponent=",".join(seats))
            episode, stop = play_watched(job, (labels[0], labels[1]), sys.stdout)
            if stop is None or episode.turns:
                write_transcripts([episode], path)
            if stop is None:
                print(f"transcript: game saved to {path}", flush=True)
                continue
            kept = (
                f"the unfinished game ({len(episode.turns)} turn"
                f"{'s' if len(episode.turns) != 1 else ''}) was saved to {path}, "
                "marked abandoned"
                if episode.turns
                else "the unfinished game had no moves and was not saved"
            )
            print(f"\n{stop.message}: {kept}.", flush=True)
            return 130 if stop.interrupted else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
