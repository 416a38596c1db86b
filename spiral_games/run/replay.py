"""A run's replay page (`launch/view.py`): every saved game drawn by its own game. Each game's
env comes from the run's config.json, or else from the project's conf/games/<game>.yaml; a game
neither builds is drawn as plain text (`GameEnv.draw_boards`'s default)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from spiral_games.config.compose import compose_run_config
from spiral_games.errors import SpiralError
from spiral_games.play.game import GameEnv, text_boards
from spiral_games.play.registry import instantiate
from spiral_games.report.viewer import DrawBoards, load_report, load_rows, render_page


def _run_games(run_dir: Path) -> dict[str, Any]:
    """games.<name> of the run's config.json ({} without one)."""
    try:
        games = json.loads((run_dir / "config.json").read_text()).get("games")
    except (OSError, ValueError, AttributeError):
        return {}
    return games if isinstance(games, dict) else {}


def _env_spec(name: str, run_games: dict[str, Any], config_dir: Path) -> dict[str, Any] | None:
    entry = run_games.get(name)
    spec = entry.get("env") if isinstance(entry, dict) else None
    if isinstance(spec, dict):
        return spec
    try:
        return compose_run_config(config_dir, [f"+games=[{name}]"]).games[name].env
    except SpiralError:
        return None


def game_envs(run_dir: Path, names: Iterable[str], config_dir: Path) -> dict[str, GameEnv | None]:
    """An env of each game in `names`, built as the run's config.json configures it, else as
    `config_dir`/games/<name>.yaml does; None for a game that neither builds."""
    run_games = _run_games(run_dir)
    envs: dict[str, GameEnv | None] = {}
    for name in names:
        spec = _env_spec(name, run_games, config_dir)
        try:
            env = instantiate(spec) if spec else None
        except SpiralError:
            env = None
        envs[name] = env if isinstance(env, GameEnv) else None
    return envs


def render_run(run_dir: Path, config_dir: Path) -> Path:
    """Write `run_dir/replay.html` from its transcripts/, eval/ and summary (or metrics), each
    game's turns drawn by its env (`config_dir`: the project's conf/, for runs without a
    config.json)."""
    rows = load_rows(run_dir)
    envs = game_envs(run_dir, sorted({row["game"] for row in rows}), config_dir)
    boards: dict[str, DrawBoards] = {
        name: env.draw_boards if env else text_boards for name, env in envs.items()
    }
    css = "".join(dict.fromkeys(env.board_css for env in envs.values() if env))
    page = run_dir / "replay.html"
    text = render_page(
        rows,
        f"spiral-games run: {run_dir.name}",
        load_report(run_dir),
        (run_dir / "curves.png").is_file(),
        boards,
        css,
    )
    page.write_text(text, encoding="utf-8")
    return page
