"""Replay viewer: one static HTML page per run (no server). On top the before/after table and
the learning curves; below every saved game, filterable by game, step, opponent and outcome,
each turn with the game's state drawn by the game itself (`GameEnv.draw_boards`, passed in as
`boards`: this module knows no game)."""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from spiral_games.report.summary import eval_changes, read_metrics, summarize, with_se
from spiral_games.report.transcripts import read_transcripts

# A saved game's turns (transcript rows' "turns") -> one escaped HTML drawing per turn
DrawBoards = Callable[[Sequence[Mapping[str, Any]]], list[str]]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;background:#fafafa;color:#222}
h1{font-size:1.4em} h2{border-bottom:2px solid #888;margin-top:1.5em}
h3{font-size:1em;color:#555}
table.report{border-collapse:collapse;background:#fff;margin:.5em 0}
table.report td,table.report th{border:1px solid #ddd;padding:.2em .6em;text-align:right}
table.report td:nth-child(-n+3),table.report th{text-align:left}
table.report .significant{font-weight:bold}
img.curves{max-width:100%;border:1px solid #ddd;background:#fff}
#filters{position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ddd}
#filters label{margin-right:1em}
.episode{background:#fff;border:1px solid #ddd;border-radius:6px;margin:.6em 0;padding:.5em 1em}
.meta{color:#555}
.turn{margin:.3em 0;padding:.2em .5em;border-left:4px solid #4a7}
.turn.role1{border-color:#47a} .turn.invalid{border-color:#d33;background:#fdecec}
.action{font-family:monospace;font-weight:bold} .reason{color:#d33}
pre.board.text{background:#f3f3f3;padding:.3em;margin:.3em 0;white-space:pre-wrap}
details pre{white-space:pre-wrap;background:#f3f3f3;padding:.5em;max-height:20em;overflow:auto}
"""

# Filters hide non-matching games; the URL hash preselects them (replay.html#game=<g>&step=0).
_SCRIPT = """
(function(){
const keys=["game","step","opponent","outcome"];
const sel=k=>document.getElementById("filter-"+k);
function apply(){
  const want={};keys.forEach(k=>{want[k]=sel(k).value;});
  let shown=0;
  document.querySelectorAll(".episode").forEach(e=>{
    const ok=keys.every(k=>!want[k]||e.dataset[k]===want[k]);
    e.hidden=!ok;if(ok)shown++;});
  document.querySelectorAll(".group,.game").forEach(g=>{
    g.hidden=!g.querySelector(".episode:not([hidden])");});
  document.getElementById("shown").textContent=shown;
  return keys.filter(k=>want[k]).map(k=>k+"="+encodeURIComponent(want[k])).join("&");
}
new URLSearchParams(location.hash.slice(1)).forEach((v,k)=>{if(keys.includes(k))sel(k).value=v;});
keys.forEach(k=>sel(k).addEventListener("change",()=>{
  const h=apply();
  try{history.replaceState(null,"",h?"#"+h:location.pathname);}catch(e){}
}));
apply();
})();
"""

_STEP_FILE = re.compile(r"step_(\d+)")


def file_step(path: Path) -> str:
    """The training step a transcript file belongs to ('0' for step_000000.jsonl: before
    training), or the file's stem when its name carries no step."""
    match = _STEP_FILE.fullmatch(path.stem)
    return str(int(match[1])) if match else path.stem


def _step_key(step: str) -> tuple[int, int, str]:
    return (0, int(step), "") if step.isdigit() else (1, 0, step)


def outcome(row: dict) -> str:
    """'invalid move', 'draw', 'win'/'loss' for the trained seat of an evaluation game, else
    'Player 0 wins' or 'Player 1 wins' (self-play)."""
    if row.get("invalid_role") is not None:
        return "invalid move"
    r0, r1 = row["returns"]
    if r0 == r1:
        return "draw"
    winner = 0 if r0 > r1 else 1
    trained = row.get("trained_roles") or [0, 1]
    if row.get("opponent") and len(trained) == 1:
        return "win" if trained[0] == winner else "loss"
    return f"Player {winner} wins"


def players(row: dict) -> str:
    """'self-play', or 'vs <opponent>' for an evaluation game."""
    return f"vs {row['opponent']}" if row.get("opponent") else "self-play"


def load_rows(run_dir: Path) -> list[dict]:
    """Every saved game of a run (transcripts/ then eval/), each with its "step"."""
    files = sorted((run_dir / "transcripts").glob("*.jsonl")) + sorted(
        (run_dir / "eval").glob("*.jsonl")
    )
    return [{"step": file_step(f), **row} for f in files for row in read_transcripts(f)]


def load_report(run_dir: Path) -> dict[str, Any] | None:
    """summary.json of a finished run, else the same numbers from metrics.jsonl, else None."""
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            return json.loads(summary.read_text())
        except json.JSONDecodeError:
            pass
    if not (run_dir / "metrics.jsonl").is_file():
        return None
    return {
        **summarize(run_dir),
        "changes": [c.as_dict() for c in eval_changes(read_metrics(run_dir))],
    }


def _change_cell(change: dict[str, Any]) -> str:
    shift, se = f"{change['change']:+.3f}", change.get("change_se")
    if not se:
        return f"<td>{shift}</td>"
    z = change["change"] / se
    cls = ' class="significant"' if abs(z) >= 2 else ""
    return f"<td{cls}>{shift} ± {se:.3f} ({z:+.1f} SE)</td>"


def changes_html(changes: list[dict[str, Any]]) -> str:
    """The before/after table (summary.json's "changes") as HTML, ± one standard error."""
    if not changes:
        return '<p class="no-eval">No evaluation in this run.</p>'
    rows = [
        "<tr>"
        + "".join(f"<td>{html.escape(str(c[k]))}</td>" for k in ("game", "opponent", "metric"))
        + f"<td>{c['before_step']} → {c['after_step']}</td>"
        + f"<td>{with_se(c['before'], c.get('before_se'))}</td>"
        + f"<td>{with_se(c['after'], c.get('after_se'))}</td>"
        + _change_cell(c)
        + "</tr>"
        for c in changes
    ]
    head = "".join(
        f"<th>{h}</th>"
        for h in ("game", "opponent", "metric", "steps", "before", "after", "change (in SEs)")
    )
    return f'<table class="report" id="before-after"><tr>{head}</tr>{"".join(rows)}</table>'


def _selfplay_html(selfplay: dict[str, dict[str, float]]) -> str:
    if not selfplay:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{v['first5']:.3f}</td><td>{v['last5']:.3f}</td></tr>"
        for key, v in selfplay.items()
    )
    return (
        '<table class="report" id="selfplay"><tr><th>self-play metric</th><th>first 5 steps</th>'
        f"<th>last 5 steps</th></tr>{rows}</table>"
    )


def report_html(report: dict[str, Any] | None, curves: bool) -> str:
    """The top of the page: run headline, before/after table, self-play table, curves."""
    parts = ['<section id="report"><h2>Evaluation before and after training</h2>']
    if report is None:
        parts.append('<p class="no-eval">No evaluation: this run has no metrics.jsonl.</p>')
    else:
        if "steps" in report:
            minutes = report.get("train_seconds", 0.0) / 60
            parts.append(f"<p>{report['steps']} training steps, {minutes:.1f} min.</p>")
        parts.append(changes_html(report.get("changes") or []))
        parts.append(_selfplay_html(report.get("selfplay") or {}))
    if curves:
        parts.append('<p><img class="curves" src="curves.png" alt="learning curves"></p>')
    return "".join(parts) + "</section>"


def _select(key: str, values: list[str], label: str = "") -> str:
    options = "".join(
        f'<option value="{html.escape(v)}">{html.escape(v)}'
        + (" (before training)" if key == "step" and v == "0" else "")
        + "</option>"
        for v in values
    )
    return (
        f'<label>{label or key} <select id="filter-{key}"><option value="">all</option>'
        f"{options}</select></label>"
    )


def filters_html(rows: list[dict]) -> str:
    """The game, step, opponent and outcome <select>s (options: the values present)."""
    return (
        '<div id="filters">'
        + _select("game", sorted({r["game"] for r in rows}))
        + _select("step", sorted({r["step"] for r in rows}, key=_step_key))
        + _select("opponent", sorted({players(r) for r in rows}), "players")
        + _select("outcome", sorted({outcome(r) for r in rows}))
        + f' <span id="shown">{len(rows)}</span> of {len(rows)} games shown</div>'
    )


def _turn_html(turn: dict, board: str) -> str:
    cls = f"turn role{turn['role']}" + ("" if turn["valid"] else " invalid")
    action = html.escape(str(turn["action"])) if turn["action"] else "(no action)"
    reason = (
        f' <span class="reason">invalid: {html.escape(turn["invalid_reason"])}</span>'
        if not turn["valid"]
        else ""
    )
    return (
        f'<div class="{cls}">Player {turn["role"]}: <span class="action">{action}</span>{reason}'
        f"{board}<details><summary>reasoning</summary><pre>{html.escape(turn['response'])}</pre>"
        f"</details><details><summary>prompt</summary><pre>{html.escape(turn['prompt'])}</pre>"
        "</details></div>"
    )


def episode_html(row: dict, draw: DrawBoards | None = None) -> str:
    """One game: its step, players and result, then each turn with the state drawn by `draw`
    (none drawn without it)."""
    data = {"game": row["game"], "step": row["step"], "opponent": players(row)}
    data["outcome"] = outcome(row)
    attrs = "".join(f' data-{k}="{html.escape(str(v))}"' for k, v in data.items())
    seats = row.get("trained_roles") or []
    model = f" (model in seat {', '.join(map(str, seats))})" if row.get("opponent") else ""
    boards = draw(row["turns"]) if draw else [""] * len(row["turns"])
    return (
        f'<div class="episode"{attrs}><div class="meta">step {html.escape(str(row["step"]))}, '
        f"{html.escape(players(row))}{model}, seed {row['seed']}, version {row['version']}, "
        f"returns {html.escape(str(row['returns']))}: {html.escape(row['reason'])}</div>"
        + "".join(_turn_html(t, b) for t, b in zip(row["turns"], boards, strict=True))
        + "</div>"
    )


def render_page(
    rows: list[dict],
    title: str,
    report: dict[str, Any] | None = None,
    curves: bool = False,
    boards: Mapping[str, DrawBoards] | None = None,
    board_css: str = "",
) -> str:
    """The run's page: report on top, filters, then games grouped by game and outcome.

    Each row is a transcript (Episode.to_json) with a "step" key added (see `load_rows`).
    `boards` draws each game's turns by game name (a game missing from it gets no drawing), and
    `board_css` styles what they draw.
    """
    boards = boards or {}
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[row["game"]][outcome(row)].append(row)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_STYLE}{board_css}</style></head><body><h1>{html.escape(title)}</h1>",
        report_html(report, curves),
        "<h2>Games</h2>",
        filters_html(rows),
    ]
    for game in sorted(groups):
        parts.append(
            f'<section class="game"><h2 id="game-{html.escape(game)}">{html.escape(game)}</h2>'
        )
        for result in sorted(groups[game]):
            episodes = sorted(groups[game][result], key=lambda r: _step_key(r["step"]))
            parts.append(
                f'<section class="group"><h3>{html.escape(result)} ({len(episodes)})</h3>'
                + "".join(episode_html(row, boards.get(game)) for row in episodes)
                + "</section>"
            )
        parts.append("</section>")
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "".join(parts)
