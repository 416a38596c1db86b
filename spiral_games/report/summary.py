"""Summaries of finished runs: before/after numbers and learning curves from metrics.jsonl."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from spiral_games.errors import ConfigError

CURVES = (  # (metric, panel title); eval curves are drawn per opponent
    ("rollout/invalid_move_rate", "self-play invalid-move rate"),
    ("rollout/response_length", "response length (tokens)"),
    ("rollout/lenient_rate", "moves read without \\boxed{} (lenient)"),
)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of `run_dir/metrics.jsonl`, one per logged step (step 0: the baseline eval)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: point at a run directory of launch/selfplay.py.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _series(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in rows if r.get(key) is not None]


def _edge_mean(points: list[tuple[int, float]], last: bool, n: int = 5) -> float | None:
    values = [v for _, v in (points[-n:] if last else points[:n])]
    return sum(values) / len(values) if values else None


def summarize(run_dir: Path) -> dict[str, Any]:
    """Eval results at the first and last evaluated step, and self-play rates over the first and
    last five steps, for every game and opponent in the run."""
    rows = read_metrics(run_dir)
    config_file = run_dir / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    evals: dict[str, dict[str, float]] = {}
    for key in sorted({k for r in rows for k in r if k.startswith("eval/") and "seat" not in k}):
        if key.endswith("/seconds"):
            continue
        points = _series(rows, key)
        if points:
            evals[key] = {
                "first_step": points[0][0],
                "first": points[0][1],
                "last_step": points[-1][0],
                "last": points[-1][1],
            }
    selfplay = {}
    for key, _ in CURVES:
        points = _series(rows, key)
        if points:
            selfplay[key] = {
                "first5": _edge_mean(points, last=False),
                "last5": _edge_mean(points, last=True),
            }
    steps = [r for r in rows if r["step"] >= 1]
    seconds = sum(r.get("time/step", 0.0) for r in steps) + sum(
        r.get("eval/seconds", 0.0) for r in rows if r["step"] == 0
    )
    return {
        "run": run_dir.name,
        "steps": len(steps),
        "rae": config.get("train", {}).get("rae"),
        "train_seconds": seconds,
        "eval": evals,
        "selfplay": selfplay,
    }


def plot_runs(runs: dict[str, Path], out: Path) -> Path:
    """One PNG of learning curves: eval win rate per opponent, then the self-play CURVES."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded = {label: read_metrics(path) for label, path in runs.items()}
    win_keys = sorted(
        {
            k
            for rows in loaded.values()
            for r in rows
            for k in r
            if k.startswith("eval/") and k.endswith("/win_rate") and "seat" not in k
        }
    )
    panels = [
        (k, k.removeprefix("eval/").replace("/win_rate", ": eval win rate")) for k in win_keys
    ]
    panels += list(CURVES)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        for (label, rows), style in zip(loaded.items(), ("-o", "--s", ":^"), strict=False):
            points = _series(rows, key)
            if points:
                ax.plot(*zip(*points, strict=True), style, markersize=3, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        if key.endswith("_rate"):
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def summary_markdown(summaries: dict[str, dict[str, Any]]) -> str:
    """A before/after table for each run."""
    lines = []
    for label, s in summaries.items():
        minutes = s["train_seconds"] / 60
        rae = "off" if s["rae"] is False else "on"
        lines += [
            f"### {label} (`{s['run']}`, RAE {rae}, {s['steps']} steps, {minutes:.0f} min)",
            "",
            "| metric | before | after |",
            "|---|---:|---:|",
        ]
        for key, v in s["eval"].items():
            if key.endswith(("win_rate", "invalid_rate")):
                lines.append(
                    f"| {key} (step {v['first_step']} → {v['last_step']}) | {v['first']:.3f} | "
                    f"{v['last']:.3f} |"
                )
        for key, v in s["selfplay"].items():
            lines.append(
                f"| {key} (first 5 → last 5 steps) | {v['first5']:.3f} | {v['last5']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


OUTCOMES = ("win_rate", "draw_rate", "loss_rate", "invalid_rate")


def standard_error(rate: float, games: float | None) -> float | None:
    """Binomial standard error of a rate measured over `games` games (None: count unknown)."""
    if not games:
        return None
    return math.sqrt(max(rate * (1 - rate), 0.0) / games)


@dataclass(frozen=True)
class EvalChange:
    """One eval metric of one (game, opponent) at the first and the last evaluation."""

    game: str
    opponent: str
    metric: str  # win_rate, draw_rate, loss_rate, invalid_rate or response_length
    before_step: int
    after_step: int
    before: float
    after: float
    before_se: float | None  # binomial, over the games played (None for response_length)
    after_se: float | None
    # reference lines at the last evaluation: player (random, expert) -> (value, its SE), the
    # player measured in the model's place on the same games, seeds and seats
    reference: dict[str, tuple[float, float | None]] = field(default_factory=dict)

    @property
    def change(self) -> float:
        return self.after - self.before

    def versus(self, player: str) -> tuple[float, float | None] | None:
        """The model's last value minus `player`'s reference value, with its SE."""
        if player not in self.reference:
            return None
        value, se = self.reference[player]
        both = None if se is None or self.after_se is None else math.hypot(se, self.after_se)
        return self.after - value, both

    @property
    def change_se(self) -> float | None:
        if self.before_se is None or self.after_se is None:
            return None
        return math.sqrt(self.before_se**2 + self.after_se**2)

    def as_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "change": self.change, "change_se": self.change_se}
        return {**out, "vs_random": self.versus("random")}


def eval_changes(rows: list[dict[str, Any]]) -> list[EvalChange]:
    """Before (first evaluation) and after (last evaluation) for every game, opponent and
    outcome rate, with standard errors, plus the model's reply length."""
    pairs = sorted(
        {
            tuple(k.split("/")[1:3])
            for r in rows
            for k in r
            if k.startswith("eval/") and k.endswith("/win_rate") and "/seat" not in k
        }
    )
    out = []
    for game, opponent in pairs:
        prefix = f"eval/{game}/{opponent}"
        evaluated = [r for r in rows if r.get(f"{prefix}/win_rate") is not None]
        if not evaluated:
            continue
        first, last = evaluated[0], evaluated[-1]
        for metric in (*OUTCOMES, "mean_return", "response_length"):
            key = f"{prefix}/{metric}"
            if first.get(key) is None or last.get(key) is None:
                continue
            out.append(
                EvalChange(
                    game,
                    opponent,
                    metric,
                    first["step"],
                    last["step"],
                    first[key],
                    last[key],
                    metric_se(first, prefix, metric),
                    metric_se(last, prefix, metric),
                )
            )
    return [with_reference(c, rows) for c in out + analysis_changes(rows)]


def metric_se(row: dict[str, Any], prefix: str, metric: str) -> float | None:
    """The SE of `prefix/metric` in `row`: binomial over the games for an outcome rate, the
    logged `_se` beside it otherwise (mean_return; none for response_length)."""
    if metric in OUTCOMES:
        return standard_error(row[f"{prefix}/{metric}"], row.get(f"{prefix}/games"))
    return row.get(f"{prefix}/{metric}_se")


REFERENCE = "ref"  # ref/<player>/<game>/... : spiral_games.run.reference


def reference_players(rows: list[dict[str, Any]]) -> list[str]:
    """The reference players logged in `rows`, random first."""
    names = {k.split("/")[1] for r in rows for k in r if k.startswith(f"{REFERENCE}/")}
    return sorted(names, key=lambda n: (n != "random", n))


def with_reference(change: EvalChange, rows: list[dict[str, Any]]) -> EvalChange:
    """`change` with each reference player's value (and SE) at the same last evaluation."""
    if change.metric == "response_length":  # scripted players write no tokens
        return change
    last = next((r for r in rows if r["step"] == change.after_step), {})
    refs: dict[str, tuple[float, float | None]] = {}
    for player in reference_players(rows):
        if change.opponent == EXACT:
            key = f"{REFERENCE}/{player}/{change.game}/{change.metric}"
            if last.get(key) is not None:
                refs[player] = (last[key], last.get(f"{key}_se"))
            continue
        prefix = f"{REFERENCE}/{player}/{change.game}/{change.opponent}"
        if last.get(f"{prefix}/{change.metric}") is not None:
            refs[player] = (
                last[f"{prefix}/{change.metric}"],
                metric_se(last, prefix, change.metric),
            )
    return replace(change, reference=refs)


EXACT = "exact"  # the `opponent` of a game analysis (no opponent: measured on the policy)


def analysis_series(
    rows: list[dict[str, Any]],
) -> dict[tuple[str, str], list[tuple[int, float, float | None]]]:
    """Every game analysis logged with a standard error (`eval/<game>/<name>` and
    `eval/<game>/<name>_se`, e.g. an exploitability): (game, name) -> [(step, value, se)]."""
    names = sorted(
        {
            tuple(k.removesuffix("_se").split("/")[1:3])
            for r in rows
            for k in r
            if k.startswith("eval/") and k.endswith("_se") and k.count("/") == 2
        }
    )
    out: dict[tuple[str, str], list[tuple[int, float, float | None]]] = {}
    for game, name in names:
        key = f"eval/{game}/{name}"
        points = [(r["step"], r[key], r.get(f"{key}_se")) for r in rows if r.get(key) is not None]
        if points:
            out[(game, name)] = points
    return out


def analysis_changes(rows: list[dict[str, Any]]) -> list[EvalChange]:
    """First and last value of every game analysis, with their standard errors."""
    out = []
    for (game, name), points in analysis_series(rows).items():
        (step0, before, before_se), (step1, after, after_se) = points[0], points[-1]
        out.append(EvalChange(game, EXACT, name, step0, step1, before, after, before_se, after_se))
    return out


def with_se(value: float, se: float | None) -> str:
    """`value ± se` with three decimals (just `value` when there is no standard error)."""
    return f"{value:.3f}" if se is None else f"{value:.3f} ± {se:.3f}"


def shift_text(change: float, se: float | None) -> str:
    """`+0.123 ± 0.045 (+2.7)`: a difference, its SE and how many SEs it is."""
    text = f"{change:+.3f}"
    if se is not None:
        text += f" ± {se:.3f}" + (f" ({change / se:+.1f})" if se > 0 else "")
    return text


def changes_markdown(changes: list[EvalChange]) -> str:
    """The before/after table: one row per game, opponent and metric, ± one standard error;
    then each reference player's value at the last evaluation (the player in the model's
    place: random, expert) and the model's last value against the random player's."""
    if not changes:
        return "No evaluation results in this run (eval.points=0, or no eval.opponents).\n"
    first = changes[0]
    players = sorted({p for c in changes for p in c.reference}, key=lambda n: (n != "random", n))
    versus = "random" in players
    lines = [
        f"| game | opponent | metric | step {first.before_step} | step {first.after_step} "
        "| change (in SEs) |"
        + "".join(f" {p} |" for p in players)
        + (" vs random (in SEs) |" if versus else ""),
        "|---|---|---|---:|---:|---:|" + "---:|" * (len(players) + versus),
    ]
    for c in changes:
        row = (
            f"| {c.game} | {c.opponent} | {c.metric.replace('_rate', '')} "
            f"| {with_se(c.before, c.before_se)} | {with_se(c.after, c.after_se)} "
            f"| {shift_text(c.change, c.change_se)} |"
        )
        for p in players:
            row += f" {with_se(*c.reference[p])} |" if p in c.reference else " |"
        if versus:
            against = c.versus("random")
            row += f" {shift_text(*against)} |" if against else " |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def plot_run(run_dir: Path, out: Path) -> Path:
    """One run's curves: per game and opponent, win/draw/loss/invalid rates with ± 1 SE error
    bars at every evaluation; then self-play invalid rate and reply lengths per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    pairs = sorted({(c.game, c.opponent) for c in eval_changes(rows) if c.opponent != EXACT})
    analyses = analysis_series(rows)
    n_panels = len(pairs) + 2 + bool(analyses)
    cols = min(n_panels, 3)
    nrows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.5 * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, (game, opponent) in zip(flat, pairs, strict=False):
        prefix = f"eval/{game}/{opponent}"
        for metric, color in zip(
            OUTCOMES, ("tab:green", "tab:gray", "tab:red", "tab:orange"), strict=True
        ):
            evaluated = [
                (r["step"], r[f"{prefix}/{metric}"], r.get(f"{prefix}/games"))
                for r in rows
                if r.get(f"{prefix}/{metric}") is not None
            ]
            if evaluated:
                steps, values, games = zip(*evaluated, strict=True)
                errors = [standard_error(v, n) or 0.0 for v, n in zip(values, games, strict=True)]
                label = metric.replace("_rate", "")
                ax.errorbar(
                    steps, values, yerr=errors, fmt="-o", ms=3, capsize=2, color=color, label=label
                )
        for player, style in zip(reference_players(rows), ("--", ":", "-."), strict=False):
            ref = _series(rows, f"{REFERENCE}/{player}/{game}/{opponent}/win_rate")
            if ref:
                ax.plot(*zip(*ref, strict=True), style, color="tab:green", label=f"win ({player})")
        ax.set_title(f"{game} vs {opponent} (eval, ± 1 SE)", fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = flat[len(pairs)]
    points = _series(rows, "rollout/invalid_move_rate")
    if points:
        ax.plot(*zip(*points, strict=True), "-", color="tab:orange", label="self-play")
    ax.set_title("self-play invalid-move rate", fontsize=10)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax = flat[len(pairs) + 1]
    for key, label in [("rollout/response_length", "self-play")] + [
        (f"eval/{g}/{o}/response_length", f"eval {g} vs {o}") for g, o in pairs
    ]:
        points = _series(rows, key)
        if points:
            ax.plot(
                *zip(*points, strict=True),
                "-o" if key.startswith("eval") else "-",
                ms=3,
                label=label,
            )
    ax.set_title("reply length (tokens)", fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if analyses:
        ax = flat[len(pairs) + 2]
        for (game, name), series in analyses.items():
            bars = ax.errorbar(
                [step for step, _, _ in series],
                [value for _, value, _ in series],
                yerr=[se or 0.0 for _, _, se in series],
                fmt="-o",
                ms=3,
                capsize=2,
                label=f"{game} {name}",
            )
            for player, style in zip(reference_players(rows), ("--", ":", "-."), strict=False):
                ref = _series(rows, f"{REFERENCE}/{player}/{game}/{name}")
                if ref:
                    ax.plot(
                        *zip(*ref, strict=True),
                        style,
                        color=bars.lines[0].get_color(),
                        label=f"{game} {name} ({player})",
                    )
        ax.set_title("exact analyses (eval, ± 1 SE; dashed: random, dotted: expert)", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_run_report(run_dir: Path) -> str:
    """Write `summary.md`, `summary.json` and `curves.png` into the run directory; returns the
    before/after table (markdown) that summary.md starts with."""
    rows = read_metrics(run_dir)
    changes = eval_changes(rows)
    table = changes_markdown(changes)
    overview = summarize(run_dir)
    minutes = overview["train_seconds"] / 60
    text = (
        f"# Run `{run_dir.name}`: {overview['steps']} steps, {minutes:.1f} min\n\n"
        "## Evaluation against fixed opponents (first → last evaluation, ± 1 standard error)\n\n"
        f"{table}\n"
        "## Self-play (mean of the first 5 → last 5 steps)\n\n"
        "| metric | first 5 | last 5 |\n|---|---:|---:|\n"
        + "".join(
            f"| {key} | {v['first5']:.3f} | {v['last5']:.3f} |\n"
            for key, v in overview["selfplay"].items()
        )
        + "\n![curves](curves.png)\n"
    )
    (run_dir / "summary.md").write_text(text)
    (run_dir / "summary.json").write_text(
        json.dumps({**overview, "changes": [c.as_dict() for c in changes]}, indent=2)
    )
    plot_run(run_dir, run_dir / "curves.png")
    return table
