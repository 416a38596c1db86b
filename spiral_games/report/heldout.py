"""The held-out evaluation's report: per model and game the outcome rates ± standard errors,
the transfer table (games and, if scored, MATH/GPQA side by side), and heldout.png."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spiral_games.report.summary import standard_error

RATES = ("win_rate", "draw_rate", "loss_rate", "invalid_rate", "opponent_invalid_rate")
# reasoning summary: model -> benchmark -> {accuracy, stderr, problems} (reasoning.harness)
Reasoning = Mapping[str, Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True)
class GameScore:
    """One model's games of one held-out game against the random opponent. Win, draw and loss
    rates sum to 1; `invalid_rate` (lost by the model's invalid reply) is part of the loss
    rate, and `opponent_invalid_rate` (the opponent's) part of the win rate."""

    model: str
    game: str
    games: int
    win_rate: float
    draw_rate: float
    loss_rate: float
    invalid_rate: float
    opponent_invalid_rate: float
    game_length: float  # turns per game, both seats
    response_length: float  # tokens per model reply
    wall_s: float  # seconds to play them
    cpu_s: float  # CPU seconds of this process meanwhile (all its threads)

    def se(self, rate: str) -> float:
        """Binomial standard error of one of RATES over the games."""
        return standard_error(getattr(self, rate), self.games) or 0.0

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> GameScore:
        """The score `as_dict` wrote (its other keys ignored)."""
        return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        """Every field and each rate's standard error (`<rate>_se`)."""
        out: dict[str, Any] = dict(vars(self))
        out.update({f"{rate}_se": self.se(rate) for rate in RATES})
        return out


def _benchmarks(models: Sequence[str], reasoning: Reasoning | None) -> list[str]:
    """The benchmarks scored, in the order the harness ran them."""
    return list(dict.fromkeys(b for m in models for b in (reasoning or {}).get(m, {})))


def _rate(value: float, se: float) -> str:
    return f"{value:.3f} ± {se:.3f}"


def _shift(value: float, se: float) -> str:
    return f"{value:+.3f} ± {se:.3f}" + (f" ({value / se:+.1f})" if se > 0 else "")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int) -> str:
    """A markdown table, its first `text_columns` columns left-aligned and the rest right."""
    rule = "|" + "---|" * text_columns + "---:|" * (len(head) - text_columns)
    lines = ["| " + " | ".join(head) + " |", rule, *("| " + " | ".join(r) + " |" for r in rows)]
    return "\n".join(lines) + "\n"


def scores_markdown(scores: Sequence[GameScore]) -> str:
    """One row per game and model: games, the outcome rates ± SE, game length, wall time."""
    head = ["game", "model", "games", "win", "draw", "loss", "invalid (model)"]
    head += ["invalid (opponent)", "turns/game", "tokens/reply", "wall s", "CPU s"]
    rows = [
        [
            s.game,
            s.model,
            str(s.games),
            *[_rate(getattr(s, r), s.se(r)) for r in RATES],
            f"{s.game_length:.1f}",
            f"{s.response_length:.1f}",
            f"{s.wall_s:.0f}",
            f"{s.cpu_s:.0f}",
        ]
        for s in sorted(scores, key=lambda s: s.game)
    ]
    return _table(head, rows, text_columns=2)


def transfer_markdown(
    scores: Sequence[GameScore],
    models: Sequence[str],
    games: Sequence[str],
    reasoning: Reasoning | None = None,
    reference: Sequence[GameScore] = (),
) -> str:
    """Rows: each game's win rate, then each benchmark's pass@1 (if scored); columns: the
    models ± SE, each model's difference from the first ± SE (independent games), and the
    reference player's win rate ± SE where `reference` scores it (e.g. the random player in
    the model's seat)."""
    by = {(s.model, s.game): s for s in scores}
    ref = {s.game: s for s in reference}
    ref_name = reference[0].model if reference else ""
    values = {
        f"{g}: win rate": [(by[(m, g)].win_rate, by[(m, g)].se("win_rate")) for m in models]
        for g in games
    }
    for b in _benchmarks(models, reasoning):
        scored = [reasoning[m][b] for m in models] if reasoning else []
        values[f"{b}: pass@1"] = [(r["accuracy"], r["stderr"]) for r in scored]
    rows = []
    for name, measured in values.items():
        base, base_se = measured[0]
        rows.append(
            [
                name,
                *[_rate(v, se) for v, se in measured],
                *[_shift(v - base, math.hypot(se, base_se)) for v, se in measured[1:]],
                *(_reference_cell(ref, name) if reference else []),
            ]
        )
    head = ["measure", *models, *[f"Δ {m} − {models[0]}" for m in models[1:]]]
    head += [ref_name] if reference else []
    return _table(head, rows, text_columns=1)


def _reference_cell(ref: Mapping[str, GameScore], row: str) -> list[str]:
    """The reference player's win rate on a row's game ('—' for a benchmark row)."""
    game = row.removesuffix(": win rate")
    return [_rate(ref[game].win_rate, ref[game].se("win_rate")) if game in ref else "—"]


def heldout_chart(
    scores: Sequence[GameScore],
    models: Sequence[str],
    games: Sequence[str],
    path: Path,
    reasoning: Reasoning | None = None,
    reference: Sequence[GameScore] = (),
) -> None:
    """heldout.png: win rate and invalid-move rate per game (a bar per model and one for the
    reference player where `reference` scores it, ± SE), and pass@1 per benchmark where the
    reasoning harness ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spiral_games.report.bars import grouped_bars, save_figure

    by = {(s.model, s.game): s for s in [*scores, *reference]}
    players = [*models, *dict.fromkeys(s.model for s in reference)]
    benchmarks = _benchmarks(models, reasoning)
    panels = 3 if benchmarks else 2
    fig, axes = plt.subplots(1, panels, figsize=(max(4.0, 1.4 * len(games)) * panels, 3.4))
    shown = (("win_rate", "win rate vs random"), ("invalid_rate", "invalid-move rate"))
    for ax, (rate, label) in zip(axes, shown, strict=False):
        grouped_bars(
            ax,
            games,
            {m: [getattr(by[(m, g)], rate) for g in games] for m in players},
            {m: [by[(m, g)].se(rate) for g in games] for m in players},
            label,
        )
        ax.set_ylim(0, 1.05)
        ax.tick_params(axis="x", labelrotation=20)
    if reasoning and benchmarks:
        grouped_bars(
            axes[2],
            benchmarks,
            {m: [reasoning[m][b]["accuracy"] for b in benchmarks] for m in models},
            {m: [reasoning[m][b]["stderr"] for b in benchmarks] for m in models},
            "pass@1",
        )
    save_figure(fig, path)
