"""Run summaries: before/after numbers and the learning-curve PNG from a run's metrics.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..conftest import REPO


def fake_run(run_dir, rae, win_rates):
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"train": {"rae": rae}}))
    rows = []
    for step, win in enumerate(win_rates):
        row = {"step": step, "eval/kuhn/random/win_rate": win, "eval/kuhn/random/invalid_rate": 0.1}
        if step:
            row.update(
                {
                    "rollout/invalid_move_rate": 1.0 / step,
                    "rollout/response_length": 10.0 * step,
                    "time/step": 2.0,
                }
            )
        rows.append(row)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.slow  # a subprocess, a terminal or a training run
def test_summarize_writes_before_after_tables_and_a_png(tmp_path):
    fake_run(tmp_path / "a", True, [0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9])
    fake_run(tmp_path / "b", False, [0.2, 0.2, 0.25, 0.3, 0.3, 0.3, 0.35])
    out = subprocess.run(
        [
            sys.executable,
            "launch/summarize.py",
            f"rae_on={tmp_path / 'a'}",
            f"rae_off={tmp_path / 'b'}",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    win = summary["rae_on"]["eval"]["eval/kuhn/random/win_rate"]
    assert (win["first_step"], win["first"], win["last_step"], win["last"]) == (0, 0.2, 6, 0.9)
    invalid = summary["rae_on"]["selfplay"]["rollout/invalid_move_rate"]
    assert invalid["first5"] == sum(1 / s for s in range(1, 6)) / 5
    assert summary["rae_on"]["steps"] == 6 and summary["rae_on"]["train_seconds"] == 12.0
    assert summary["rae_off"]["rae"] is False
    assert "| eval/kuhn/random/win_rate (step 0 → 6) | 0.200 | 0.900 |" in out.stdout
    png = (tmp_path / "out" / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.slow  # a subprocess, a terminal or a training run
def test_summarize_names_a_missing_run(tmp_path):
    out = subprocess.run(
        [sys.executable, "launch/summarize.py", str(tmp_path / "nope"), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "metrics.jsonl does not exist" in out.stderr


def test_run_report_carries_game_analyses_with_their_standard_errors(tmp_path):
    """A game analysis (eval/<game>/<name> with eval/<game>/<name>_se, e.g. Kuhn
    exploitability) is in summary.md, summary.json and curves.png, before and after."""
    from spiral_games.report.summary import write_run_report

    run_dir = tmp_path / "run"
    fake_run(run_dir, True, [0.2, 0.4, 0.6])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row, (value, se) in zip(rows, [(0.5, 0.04), (0.3, 0.03), (0.1, 0.02)], strict=True):
        row.update({"eval/kuhn/exploitability": value, "eval/kuhn/exploitability_se": se})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = write_run_report(run_dir)
    assert "| kuhn | exact | exploitability | 0.500 ± 0.040 | 0.100 ± 0.020 |" in table
    assert "-0.400 ± 0.045 (-8.9)" in table
    changes = json.loads((run_dir / "summary.json").read_text())["changes"]
    exact = [c for c in changes if c["opponent"] == "exact"]
    assert [(c["metric"], c["before"], c["after"]) for c in exact] == [("exploitability", 0.5, 0.1)]
    assert "exploitability" in (run_dir / "summary.md").read_text()
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_report_sets_each_result_beside_the_random_and_expert_lines(tmp_path):
    """Reference lines (ref/<player>/...) appear as columns of the before/after table, with the
    model's last value against the random player's, in SEs; summary.json carries them."""
    from spiral_games.report.summary import standard_error, write_run_report

    run_dir = tmp_path / "run"
    fake_run(run_dir, True, [0.2, 0.4, 0.6])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.update(
            {
                "eval/kuhn/random/games": 100,
                "eval/kuhn/exploitability": 0.3,
                "eval/kuhn/exploitability_se": 0.02,
                "ref/random/kuhn/random/win_rate": 0.5,
                "ref/random/kuhn/random/games": 100,
                "ref/expert/kuhn/random/win_rate": 0.7,
                "ref/expert/kuhn/random/games": 100,
                "ref/random/kuhn/exploitability": 11 / 24,
                "ref/random/kuhn/exploitability_se": 0.0,
                "ref/expert/kuhn/exploitability": 0.0,
                "ref/expert/kuhn/exploitability_se": 0.0,
                "eval/kuhn/random/mean_return": 0.1 * row["step"],
                "eval/kuhn/random/mean_return_se": 0.03,
                "ref/random/kuhn/random/mean_return": 0.0,
                "ref/random/kuhn/random/mean_return_se": 0.04,
            }
        )
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = write_run_report(run_dir)
    header = table.splitlines()[0]
    assert header.endswith("| random | expert | vs random (in SEs) |")
    win = next(line for line in table.splitlines() if "| kuhn | random | win |" in line)
    se_model, se_random = standard_error(0.6, 100), standard_error(0.5, 100)
    assert f"| {0.5:.3f} ± {se_random:.3f} |" in win
    assert f"| {0.7:.3f} ± {standard_error(0.7, 100):.3f} |" in win
    vs_se = (se_model**2 + se_random**2) ** 0.5
    assert win.endswith(f"| {0.1:+.3f} ± {vs_se:.3f} ({0.1 / vs_se:+.1f}) |")
    exact = next(line for line in table.splitlines() if "| exploitability |" in line)
    gap = 0.3 - 11 / 24
    assert exact.endswith(
        f"| {11 / 24:.3f} ± 0.000 | 0.000 ± 0.000 | {gap:+.3f} ± 0.020 ({gap / 0.02:+.1f}) |"
    )
    chips = next(line for line in table.splitlines() if "| mean_return |" in line)
    assert chips.endswith("| 0.000 ± 0.040 | | +0.200 ± 0.050 (+4.0) |")  # no expert line logged
    changes = json.loads((run_dir / "summary.json").read_text())["changes"]
    kuhn_win = next(c for c in changes if c["metric"] == "win_rate")
    assert kuhn_win["reference"]["random"][0] == 0.5
    assert kuhn_win["vs_random"][0] == pytest.approx(0.1)
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
