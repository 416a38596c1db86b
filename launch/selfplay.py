"""Self-play entry point: `python launch/selfplay.py +games=[kuhn,tictactoe] [overrides...]`.

Composes the Hydra config (conf/), validates it against the typed schema, builds the games,
resolves the model and starts the selected inference engine. The training loop is not
implemented yet: for now the command stops after printing the resolved config and the model's
answer to the first game's opening observation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout: make `games` importable
    sys.path.insert(0, str(REPO))

from spiral_games.compose import compose_run_config  # noqa: E402
from spiral_games.config import RunConfig  # noqa: E402
from spiral_games.errors import SpiralError  # noqa: E402

USAGE = """usage: python launch/selfplay.py +games=[kuhn,tictactoe] [key=value ...] [--cfg]

  +games=[a,b]   games to play, from conf/games/ (required)
  key=value      any override, checked against the schema (e.g. model=tiny-random)
  --cfg          print the resolved config and exit
"""


def main(argv: list[str]) -> int:
    """Run the self-play job; returns the process exit code."""
    if {"-h", "--help"} & set(argv):
        print(USAGE)
        return 0
    print_only = "--cfg" in argv
    overrides = [a for a in argv if a != "--cfg"]
    try:
        cfg = compose_run_config(REPO / "conf", overrides)
        print(json.dumps(dataclasses.asdict(cfg), indent=2))
        if print_only:
            return 0
        first_words(cfg)
    except SpiralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        "\nStopping here: the self-play training loop is not implemented yet "
        "(tracked in the 'Learning loop' issue). Nothing was trained."
    )
    return 0


def first_words(cfg: RunConfig) -> None:
    """Build the games, resolve the model, start the engine and answer one game's first turn."""
    from spiral_games.engines.base import build_engine
    from spiral_games.models import resolve_model
    from spiral_games.play import GameJob, GameSession
    from spiral_games.prompting import encode_prompt
    from spiral_games.registry import build_rules
    from spiral_games.types import SamplingParams

    rules = {name: build_rules(name, game) for name, game in cfg.games.items()}
    cache = Path(cfg.model.cache_dir) if cfg.model.cache_dir else None
    start = time.perf_counter()
    model = resolve_model(cfg.model.name, cache, seed=cfg.model.seed)
    print(f"\nmodel {cfg.model.name} -> {model.path} ({time.perf_counter() - start:.1f} s)")
    engine = build_engine(
        cfg.rollout.engine,
        model.path,
        dtype=cfg.model.dtype,
        max_model_len=cfg.rollout.max_model_len,
        seed=cfg.seed,
        cpu_threads=cfg.rollout.cpu_threads,
        kv_cache_gib=cfg.rollout.kv_cache_gib,
    )
    name = next(iter(cfg.games))
    session = GameSession(GameJob(rules[name], cfg.seed, (None, None)))  # type: ignore[arg-type]
    obs = session.pending()
    assert obs is not None
    prompt = encode_prompt(model.tokenizer, obs.text, cfg.games[name].prompt_style)
    params = SamplingParams(temperature=0.0, max_tokens=cfg.rollout.max_tokens)
    out = engine.generate([prompt], params)[0]
    parsed = session.env.parse_action(out.text, obs.role)
    print(f"engine {cfg.rollout.engine}, game {name}, first turn ({len(prompt)} prompt tokens):")
    print(f"  first words: {out.text[:300]!r}")
    print(f"  parsed action: {parsed.action or 'invalid: ' + parsed.reason}")
    engine.close()


if __name__ == "__main__":  # vLLM spawns its engine core: keep the guard
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
