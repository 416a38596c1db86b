"""Game replay viewer: saved transcripts rendered as one static HTML page (no server)."""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

from spiral_games.transcripts import read_transcripts

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;background:#fafafa;color:#222}
h1{font-size:1.4em} h2{border-bottom:2px solid #888;margin-top:1.5em}
h3{font-size:1em;color:#555}
.episode{background:#fff;border:1px solid #ddd;border-radius:6px;margin:.6em 0;padding:.5em 1em}
.turn{margin:.3em 0;padding:.2em .5em;border-left:4px solid #4a7}
.turn.role1{border-color:#47a} .turn.invalid{border-color:#d33;background:#fdecec}
.action{font-family:monospace;font-weight:bold} .reason{color:#d33}
details pre{white-space:pre-wrap;background:#f3f3f3;padding:.5em;max-height:20em;overflow:auto}
"""


def outcome(row: dict) -> str:
    """'invalid move', 'Player 0 wins', 'Player 1 wins' or 'draw'."""
    if row.get("invalid_role") is not None:
        return "invalid move"
    r0, r1 = row["returns"]
    return "draw" if r0 == r1 else ("Player 0 wins" if r0 > r1 else "Player 1 wins")


def _turn_html(turn: dict) -> str:
    cls = f"turn role{turn['role']}" + ("" if turn["valid"] else " invalid")
    action = html.escape(str(turn["action"])) if turn["action"] else "(no action)"
    reason = (
        f' <span class="reason">invalid: {html.escape(turn["invalid_reason"])}</span>'
        if not turn["valid"]
        else ""
    )
    return (
        f'<div class="{cls}">Player {turn["role"]}: <span class="action">{action}</span>{reason}'
        f"<details><summary>reasoning</summary><pre>{html.escape(turn['response'])}</pre>"
        f"</details><details><summary>prompt</summary><pre>{html.escape(turn['prompt'])}</pre>"
        "</details></div>"
    )


def render_page(rows: list[dict], title: str) -> str:
    """HTML for transcripts grouped by game, then by outcome."""
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[row["game"]][outcome(row)].append(row)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    for game in sorted(groups):
        parts.append(f'<h2 id="game-{html.escape(game)}">{html.escape(game)}</h2>')
        for result in sorted(groups[game]):
            episodes = groups[game][result]
            parts.append(f"<h3>{html.escape(result)} ({len(episodes)})</h3>")
            for row in episodes:
                versus = f" vs {html.escape(row['opponent'])}" if row.get("opponent") else ""
                parts.append(
                    f'<div class="episode" data-game="{html.escape(game)}">seed {row["seed"]}, '
                    f"version {row['version']}{versus}, returns {row['returns']}: "
                    f"{html.escape(row['reason'])}"
                    + "".join(_turn_html(t) for t in row["turns"])
                    + "</div>"
                )
    parts.append("</body></html>")
    return "".join(parts)


def render_run(run_dir: Path) -> Path:
    """Write `run_dir/replay.html` from its transcripts/ and eval/ JSONL files."""
    files = sorted((run_dir / "transcripts").glob("*.jsonl")) + sorted(
        (run_dir / "eval").glob("*.jsonl")
    )
    rows = [row for f in files for row in read_transcripts(f)]
    page = run_dir / "replay.html"
    page.write_text(render_page(rows, f"spiral-games replays: {run_dir.name}"), encoding="utf-8")
    return page
