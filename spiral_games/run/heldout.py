"""The held-out evaluation: each model plays each held-out TextArena game against a random
opponent, its seat drawn at random every game; optionally the MATH/GPQA harness on the same
models; results.json, heldout.md and heldout.png in the output directory."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spiral_games.config.compose import compose_game_config
from spiral_games.config.schema import (
    EvalConfig,
    GameConfig,
    HarnessConfig,
    HeldoutConfig,
    RunConfig,
)
from spiral_games.errors import ConfigError
from spiral_games.play.game import TextArenaGame
from spiral_games.play.policy import Policy, reseed_policy
from spiral_games.play.registry import instantiate
from spiral_games.report.heldout import GameScore, heldout_chart, scores_markdown, transfer_markdown
from spiral_games.run.heldout_resume import (
    SCORES,
    ScoreKey,
    check_engine,
    game_settings,
    kept_score,
    start_call,
)
from spiral_games.types import Episode

if TYPE_CHECKING:
    from spiral_games.play.loop import GameRules

OPPONENT = "random"
GENERIC = "generic: moves read from its observations"
REFERENCE = "random player"  # the reference line's label: the random opponent in the model's seat


@dataclass(frozen=True)
class HeldoutGame:
    """A game to evaluate on: its config, and where its moves come from (its module in
    games/, or the generic reader)."""

    name: str
    config: GameConfig
    source: str


def generic_game_config(env_id: str) -> GameConfig:
    """A TextArena env the project does not wrap: `ObservedTextArenaGame` and its random
    opponent; invalid moves as GameConfig's defaults have them (SPIRAL's penalty)."""
    return GameConfig(
        env={"_target_": "spiral_games.play.observed.ObservedTextArenaGame", "env_id": env_id},
        opponents={OPPONENT: {"_target_": "spiral_games.play.observed.ObservedRandomPolicy"}},
    )


def heldout_games(names: Sequence[str], config_dir: Path) -> dict[str, HeldoutGame]:
    """Each named game: a game of conf/games/, a TextArena id a game there wraps (its module
    is used), or any other registered TextArena id (read generically).

    Raises:
        ConfigError: a name that is neither, or a game two players cannot play.
    """
    import textarena as ta

    registry = ta.envs.registration.ENV_REGISTRY
    local = sorted(p.stem for p in (config_dir / "games").glob("*.yaml"))
    wrapped: dict[str, str] | None = None
    out: dict[str, HeldoutGame] = {}
    for name in names:
        if name in local:
            game = HeldoutGame(name, compose_game_config(config_dir, name), f"conf/games/{name}")
        elif name in registry:
            wrapped = _wrapped_ids(config_dir, local) if wrapped is None else wrapped
            if name in wrapped:
                own = wrapped[name]
                game = HeldoutGame(name, compose_game_config(config_dir, own), f"conf/games/{own}")
            else:
                game = HeldoutGame(name, generic_game_config(name), GENERIC)
        else:
            near = difflib.get_close_matches(name, [*registry, *local], n=3)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise ConfigError(
                f"Unknown game {name!r}: neither a TextArena env id nor a game of conf/games/ "
                f'({", ".join(local)}).{hint} Use a registered id (python -c "import textarena; '
                'print(sorted(textarena.envs.registration.ENV_REGISTRY))" lists them), e.g. '
                "envs=[ConnectFour-v0,PigDice-v0]."
            )
        if OPPONENT not in game.config.opponents:
            raise ConfigError(f"{game.source} configures no {OPPONENT!r} opponent: add one.")
        _check_two_player(game)
        out[name] = game
    return out


def _wrapped_ids(config_dir: Path, local: Sequence[str]) -> dict[str, str]:
    """TextArena id -> the game of conf/games/ whose module plays that env."""
    out: dict[str, str] = {}
    for name in local:
        env = instantiate(compose_game_config(config_dir, name).env)
        if isinstance(env, TextArenaGame):
            out.setdefault(env.env_id, name)
    return out


def _check_two_player(game: HeldoutGame) -> None:
    try:
        instantiate(game.config.env).reset(0)
    except ConfigError:
        raise
    except Exception as exc:  # TextArena asserts its player count, or fails in its own way
        raise ConfigError(
            f"TextArena could not start {game.name} with two players ({type(exc).__name__}: "
            f"{str(exc).strip()[:300]}). Held-out evaluation takes two-player games that "
            "TextArena starts here."
        ) from None


def run_config(cfg: HeldoutConfig, weights: str, games: dict[str, HeldoutGame]) -> RunConfig:
    """The run config one model plays the held-out games under: the configured model recipe
    with `weights` as its name, evaluation sampling against the random opponent."""
    return RunConfig(
        model=dataclasses.replace(cfg.model, name=weights),
        games={name: copy.deepcopy(g.config) for name, g in games.items()},
        rollout=copy.deepcopy(cfg.rollout),
        eval=EvalConfig(
            opponents=[OPPONENT],
            reference=[],
            temperature=cfg.temperature,
            text_temperature=cfg.text_temperature,
            spell_choices=cfg.spell_choices,
            top_p=cfg.top_p,
            concurrency=cfg.concurrency,
        ),
        seed=cfg.seed,
        output_dir=cfg.output_dir,
    )


def score(
    model: str, game: str, episodes: Sequence[Episode], wall_s: float, cpu_s: float
) -> GameScore:
    """The outcome rates of the model's seat (`trained_roles[0]`) over `episodes`."""
    n = len(episodes)
    seat = [e.trained_roles[0] for e in episodes]
    mine = [e.returns[s] for e, s in zip(episodes, seat, strict=True)]
    theirs = [e.returns[1 - s] for e, s in zip(episodes, seat, strict=True)]
    replies = [
        len(t.response_ids)
        for e, s in zip(episodes, seat, strict=True)
        for t in e.turns
        if t.role == s
    ]
    return GameScore(
        model=model,
        game=game,
        games=n,
        win_rate=sum(m > t for m, t in zip(mine, theirs, strict=True)) / n,
        draw_rate=sum(m == t for m, t in zip(mine, theirs, strict=True)) / n,
        loss_rate=sum(m < t for m, t in zip(mine, theirs, strict=True)) / n,
        invalid_rate=sum(e.invalid_role == s for e, s in zip(episodes, seat, strict=True)) / n,
        opponent_invalid_rate=sum(
            e.invalid_role == 1 - s for e, s in zip(episodes, seat, strict=True)
        )
        / n,
        game_length=sum(len(e.turns) for e in episodes) / n,
        response_length=sum(replies) / len(replies) if replies else 0.0,
        wall_s=wall_s,
        cpu_s=cpu_s,
    )


def play_scored(
    label: str,
    game: GameRules,
    opponent: Policy,
    player: Policy,
    seed: int,
    cfg: HeldoutConfig,
    out: Path,
    say: Callable[[str], None],
    record: dict[str, Any] | None = None,
    transcripts: Path | None = None,
) -> GameScore:
    """`cfg.games_per_game` games of `player` against `opponent`, its seat drawn at random from
    `seed` (so every player gets the same games and seats), scored; the games written to
    `transcripts` (if given), then the score (with `seed` and `record`'s fields: weights,
    engine) appended to out/scores.jsonl: what a stopped call keeps, and a resumed one reuses."""
    from spiral_games.play.loop import play_games
    from spiral_games.play.rollout import evaluation_jobs
    from spiral_games.report.transcripts import write_transcripts

    jobs = evaluation_jobs(
        {game.name: game},
        {(game.name, OPPONENT): opponent},
        cfg.games_per_game,
        seed,
        player,
        first_seat=None,
    )
    start, cpu = time.perf_counter(), time.process_time()
    episodes = play_games(jobs, concurrency=cfg.concurrency)
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    s = score(label, game.name, episodes, wall_s, cpu_s)
    if transcripts is not None:  # whole or not at all: a replayed game's file is replaced
        part = transcripts.with_name(transcripts.name + ".part")
        part.unlink(missing_ok=True)
        write_transcripts(episodes, part)
        part.replace(transcripts)
    with (out / SCORES).open("a") as f:
        f.write(json.dumps({**s.as_dict(), "seed": seed, **(record or {})}) + "\n")
    say(
        f"{label} {game.name}: {s.games} games in {s.wall_s:.0f} s ({s.cpu_s:.0f} CPU s): "
        f"win {s.win_rate:.3f}, draw {s.draw_rate:.3f}, loss {s.loss_rate:.3f} "
        f"(invalid {s.invalid_rate:.3f})"
    )
    return s


def play_model(
    label: str,
    run: RunConfig,
    cfg: HeldoutConfig,
    out: Path,
    say: Callable[[str], None],
    kept: Mapping[ScoreKey, dict[str, Any]],
) -> tuple[list[GameScore], dict[str, str]]:
    """`cfg.games_per_game` games of each game against the random opponent for one model
    (`play_scored`), but those `kept` from the call this one resumes; transcripts to
    out/transcripts/<label>/<game>.jsonl. Returns the scores and the engine and dtype it ran
    on (the model is not loaded when every score is kept)."""
    from spiral_games.actors.rollout_worker import RolloutWorker, WorkerConfig
    from spiral_games.llm.models import resolve_configured

    weights = run.model.name
    keys = {g: score_key(label, weights, k, g, cfg) for k, g in enumerate(run.games)}
    earlier = {g: kept_score(kept, keys[g], config) for g, config in run.games.items()}
    lines = {g: line for g, line in earlier.items() if line is not None}
    scores = {g: GameScore.from_dict(line) for g, line in lines.items()}
    for game in scores:
        say(f"{label} {game}: kept from the call this one resumes")
    if len(scores) == len(keys):
        return [scores[g] for g in keys], next(iter(lines.values()))["engine"]
    start = time.perf_counter()
    worker = RolloutWorker(WorkerConfig.from_run(run, resolve_configured(run.model).path))
    engine = {
        "engine": str(worker.engine_kind),
        "dtype": str(worker.cfg.dtype),
        "load_s": f"{time.perf_counter() - start:.1f}",
    }
    folder = out / "transcripts" / transcript_folder(label)
    try:
        check_engine(label, list(lines.values()), engine)
        for game, config in run.games.items():
            if game in scores:
                continue
            seed = keys[game].seed  # the same games and seats for every model
            opponent = worker.eval_opponents[(game, OPPONENT)]
            worker.engine.reseed(seed)
            reseed_policy(opponent, seed)
            player, rules = worker.eval_policy, worker.rules[game]
            record = {"weights": weights, "engine": engine, "game_config": game_settings(config)}
            scores[game] = play_scored(
                label, rules, opponent, player, seed, cfg, out, say, record,
                folder / f"{game}.jsonl",
            )  # fmt: skip
    finally:
        worker.close()
    return [scores[g] for g in keys], engine


def score_key(label: str, weights: str, k: int, game: str, cfg: HeldoutConfig) -> ScoreKey:
    """The key of `label`'s score on the `k`th game: its seed is `cfg.seed + k`, so every model
    (and the random player) gets the same games and seats."""
    return ScoreKey(label, weights, game, cfg.seed + k, cfg.games_per_game)


def transcript_folder(label: str) -> str:
    """A model's folder under transcripts/: its label, a hub id's `/` written `_`."""
    return label.replace("/", "_")


def play_reference(
    run: RunConfig,
    cfg: HeldoutConfig,
    out: Path,
    say: Callable[[str], None],
    kept: Mapping[ScoreKey, dict[str, Any]],
) -> list[GameScore]:
    """The reference line: the random opponent plays in the model's place, with the games,
    seeds and seats every model gets (`play_model`), and is scored the same way; a score
    `kept` from the call this one resumes is not played again."""
    from spiral_games.play.registry import build_opponent, build_rules

    scores = []
    for k, (game, config) in enumerate(run.games.items()):
        key = score_key(REFERENCE, "", k, game, cfg)
        seed, line = key.seed, kept_score(kept, key, config)
        if line is not None:
            say(f"{REFERENCE} {game}: kept from the call this one resumes")
            scores.append(GameScore.from_dict(line))
            continue
        opponent = build_opponent(game, config, OPPONENT, seed=seed)
        player = build_opponent(game, config, OPPONENT, seed=seed + 1)
        rules = build_rules(game, config)
        record = {"weights": "", "game_config": game_settings(config)}
        scores.append(play_scored(REFERENCE, rules, opponent, player, seed, cfg, out, say, record))
    return scores


def reasoning_config(cfg: HeldoutConfig, out: Path) -> HarnessConfig:
    """The MATH/GPQA harness on the same models, engine and sampling (`cfg.reasoning`)."""
    r = cfg.reasoning
    return HarnessConfig(
        models=cfg.labelled_models,
        benchmarks=list(r.benchmarks),
        data_dir=r.data_dir,
        hf_datasets=r.hf_datasets,
        limit=r.limit,
        n_samples=r.n_samples,
        # free text: a choice run's text_temperature, not its choice temperature
        temperature=cfg.temperature if cfg.text_temperature is None else cfg.text_temperature,
        top_p=cfg.top_p,
        max_tokens=r.max_tokens,
        max_model_len=cfg.rollout.max_model_len,
        engine=cfg.rollout.engine,
        dtype=cfg.model.dtype,
        seed=cfg.seed,
        output_dir=str(out / "reasoning"),
    )


def run_heldout(cfg: HeldoutConfig, config_dir: Path, say: Callable[[str], None] = print) -> Path:
    """Evaluate every model on every held-out game (and, with `cfg.harness`, on MATH/GPQA);
    write results.json, heldout.md and heldout.png to `cfg.output_dir`. Bad games, models and
    benchmark files are refused before anything is played."""
    from spiral_games.config.hardware import this_machine
    from spiral_games.llm.models import resolve_configured
    from spiral_games.reasoning.data import load_benchmark
    from spiral_games.reasoning.harness import run_harness, summarize

    games = heldout_games(cfg.envs, config_dir)
    models = cfg.labelled_models
    runs = {label: run_config(cfg, weights, games) for label, weights in models.items()}
    for run in runs.values():
        resolve_configured(run.model)  # a missing checkpoint fails here, not after hours
    harness = reasoning_config(cfg, Path(cfg.output_dir)) if cfg.harness else None
    if harness is not None:
        for bench in harness.benchmarks:
            load_benchmark(
                bench, Path(harness.data_dir), harness.limit, cfg.seed, harness.hf_datasets
            )
    out = Path(cfg.output_dir)
    kept = start_call(cfg, out)
    began = time.perf_counter()
    scores: list[GameScore] = []
    engines = {}
    first = next(iter(runs.values()))
    reference = play_reference(first, cfg, out, say, kept) if cfg.reference else []
    for label, run in runs.items():
        played, engines[label] = play_model(label, run, cfg, out, say, kept)
        scores += played
    asked = [(label, run.model.name) for label, run in runs.items()]
    asked += [(REFERENCE, "")] if cfg.reference else []
    resumed = sum(  # the (model, game) scores kept, not played
        kept_score(kept, score_key(*a, k, g, cfg), c) is not None
        for a in asked
        for k, (g, c) in enumerate(first.games.items())
    )
    reasoning, reasoning_s = None, 0.0
    if harness is not None:
        start = time.perf_counter()
        run_harness(harness)
        reasoning_s = time.perf_counter() - start
        results = json.loads((Path(harness.output_dir) / "results.json").read_text())
        reasoning = summarize(results["records"])
    machine = this_machine().describe()
    summary = {
        "models": models,
        "games": {name: g.source for name, g in games.items()},
        "games_per_game": cfg.games_per_game,
        "seed": cfg.seed,
        "machine": machine,
        "engines": engines,
        "scores": [s.as_dict() for s in scores],
        "reference": [s.as_dict() for s in reference],
        "reasoning": reasoning,
        "resumed": resumed,  # (model, game) scores kept from the call this one resumed
        "wall_s": {"games": time.perf_counter() - began - reasoning_s, "reasoning": reasoning_s},
        "config": dataclasses.asdict(cfg),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "heldout.md").write_text(report_markdown(summary, scores, list(models), cfg, reference))
    heldout_chart(scores, list(models), list(games), out / "heldout.png", reasoning, reference)
    return out


def report_markdown(
    summary: dict,
    scores: list[GameScore],
    models: list[str],
    cfg: HeldoutConfig,
    reference: Sequence[GameScore] = (),
) -> str:
    """heldout.md: what was run where, the transfer table and the per-game outcome table."""
    engines = "; ".join(
        f"{label}: {e['engine']}, {e['dtype']}" for label, e in summary["engines"].items()
    )
    wall = summary["wall_s"]
    lines = [
        "# Held-out games",
        "",
        f"Models: {', '.join(f'{k} = `{v}`' for k, v in summary['models'].items())}. "
        f"Opponent: uniform random, the model's seat drawn at random each game; "
        f"{cfg.games_per_game} games per model and game (seed {cfg.seed}); sampling at "
        f"temperature {cfg.temperature}"
        + (
            ""
            if cfg.text_temperature is None
            else f" ({cfg.text_temperature} for free-text replies)"
        )
        + f", top_p {cfg.top_p}; prompt {cfg.model.prompt_style}, "
        f"{cfg.model.action_format} parsing, replies of at most {cfg.model.max_tokens} tokens"
        + (
            "; moves no one token tells apart spelled by masked choices (spell_choices)."
            if cfg.spell_choices and cfg.model.action_format == "choice"
            else "."
        ),
        "",
        f"Machine: {summary['machine']}. Engine: {engines}. Wall time: games "
        + f"{wall['games']:.0f} s"
        + (f", MATH/GPQA {wall['reasoning']:.0f} s." if cfg.harness else ".")
        + (
            f" Resumed: {summary['resumed']} (model, game) scores kept from the earlier call in "
            "this directory (their wall times are that call's)."
            if summary.get("resumed")
            else ""
        ),
        "",
        "Games: " + "; ".join(f"{g} ({src})" for g, src in summary["games"].items()) + ".",
        "",
        "## Transfer",
        "",
        *(
            [
                f"`{REFERENCE}`: the uniform random opponent in the model's place, on the same "
                "games, seeds and seats.",
                "",
            ]
            if reference
            else []
        ),
        transfer_markdown(scores, models, list(summary["games"]), summary["reasoning"], reference),
        "## Outcomes against the random opponent",
        "",
        "Rates ± one binomial standard error. Win + draw + loss = 1; an invalid reply loses the "
        "game (SPIRAL's penalty), so `invalid (model)` is part of the loss rate and `invalid "
        "(opponent)` part of the win rate.",
        "",
        scores_markdown([*scores, *reference]),
    ]
    if cfg.harness:
        r = cfg.reasoning
        lines += [
            f"MATH/GPQA: {', '.join(r.benchmarks)}, first {r.limit or 'all'} problems, "
            f"{r.n_samples} sample(s) each, at most {r.max_tokens} tokens "
            "(details in reasoning/report.md and reasoning/results.json).",
            "",
        ]
    return "\n".join(lines)
