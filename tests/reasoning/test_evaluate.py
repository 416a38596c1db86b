"""launch/evaluate.py end to end: 10 MATH500 problems plus the GPQA fixture, smollm2 on CPU."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from ..conftest import REPO

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow

SHARED = REPO.parent / "shared" / "data" / "eval"


@pytest.mark.slow
def test_evaluate_writes_results_report_and_chart(smollm2, tmp_path):
    if not (SHARED / "math500.jsonl").is_file():
        pytest.skip(f"benchmark data not found at {SHARED}")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SHARED / "math500.jsonl", data)
    shutil.copy(REPO / "tests" / "fixtures" / "gpqa_diamond.csv", data)
    out = subprocess.run(
        [
            sys.executable,
            "launch/evaluate.py",
            "--compare",
            "base=smollm2-135m",
            f"again={smollm2.path}",
            f"data_dir={data}",
            "limit=10",
            "n_samples=2",
            "max_tokens=128",
            "benchmarks=[math500,gpqa_diamond]",
            f"output_dir={tmp_path}/out",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["summary"]) == {"base", "again"}
    assert results["summary"]["base"]["math500"]["problems"] == 10
    assert results["summary"]["base"]["gpqa_diamond"]["problems"] == 5
    records = results["records"]
    assert len(records) == 2 * 2 * (10 + 5)  # models x samples x problems
    assert set(records[0]) >= {"prompt", "response", "extracted", "gold", "correct"}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| math500 |" in report and "Δ again − base" in report
    assert (tmp_path / "out" / "chart.png").stat().st_size > 1000


def test_missing_dataset_says_where_to_put_the_file(tmp_path, reliability):
    out = subprocess.run(
        [
            sys.executable,
            "launch/evaluate.py",
            "--compare",
            "base=tiny-random",
            f"data_dir={tmp_path}",
            "benchmarks=[aime24]",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"put aime24.jsonl (or .csv) in {tmp_path}" in out.stderr
    reliability.update(
        fault="Benchmark file missing, truncated or in the wrong format",
        tries=1,
        outcome="ConfigError naming the file, the line or column, and the expected format",
        order=8,
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "math500.jsonl",
            '{"problem": "1+1", "answer": "2"}\n{"problem": "2+',
            "line 2 is not valid",
        ),
        ("math500.jsonl", '[{"problem": "1+1", "answer": "2"}]\n', "line 1 is a list"),
        ("math500.jsonl", '{"question_text": "1+1"}\n', "needs 'problem' and 'answer'"),
        ("math500.jsonl", b"\xff\xfe binary", "Cannot read benchmark file"),
        ("gpqa_diamond.csv", "Question,Correct Answer\nWhy?,Because\n", "lacks"),
    ],
)
def test_truncated_or_wrong_format_dataset_is_one_clear_error(
    name, content, message, tmp_path, reliability
):
    from spiral_games.errors import ConfigError
    from spiral_games.reasoning.data import load_benchmark

    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=message):
        load_benchmark(name.split(".")[0], tmp_path)
    reliability.update(
        fault="Benchmark file missing, truncated or in the wrong format",
        tries=1,
        outcome="ConfigError naming the file, the line or column, and the expected format",
        order=8,
    )


def test_gpqa_choices_are_shuffled_with_a_fixed_seed_per_question():
    from spiral_games.reasoning.data import load_benchmark

    fixture = REPO / "tests" / "fixtures"
    first = load_benchmark("gpqa_diamond", fixture, seed=0)
    again = load_benchmark("gpqa_diamond", fixture, seed=0)
    assert first == again
    assert len({p.gold for p in first}) > 1  # the correct answer is not always (A)
    for p in first:
        line = next(x for x in p.question.splitlines() if x.startswith(f"({p.gold})"))
        assert line  # the gold letter labels one of the four choices
    assert "(A) 20 m/s" in first[0].question or f"({first[0].gold}) 20 m/s" in first[0].question
