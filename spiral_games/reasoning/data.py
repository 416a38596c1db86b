"""Reasoning benchmarks: MATH500, AIME24/25, AMC23, Minerva Math and GPQA-Diamond problems,
read from local JSONL/CSV files (public release field names) or Hugging Face dataset ids."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spiral_games.errors import ConfigError
from spiral_games.reasoning.grading import last_boxed_answer

MATH_BENCHMARKS = ("math500", "aime24", "aime25", "amc23", "minerva_math")
CHOICE_BENCHMARKS = ("gpqa_diamond",)
BENCHMARKS = MATH_BENCHMARKS + CHOICE_BENCHMARKS
HF_IDS = {
    "math500": "HuggingFaceH4/MATH-500",
    "aime24": "HuggingFaceH4/aime_2024",
    "amc23": "math-ai/amc23",
    "gpqa_diamond": "Idavidrein/gpqa",  # gated: accept the terms on its page and set HF_TOKEN
}
LETTERS = "ABCD"


@dataclass(frozen=True)
class Problem:
    benchmark: str
    index: int
    question: str  # the text the model sees (choices included for GPQA)
    gold: str  # math answer, or the correct letter


def _rows(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                return list(csv.DictReader(fh))
        rows = []
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise ConfigError(
                        f"{path} line {number} is not valid JSON ({exc.args[0][:60]}); the file "
                        "may be truncated. Each line must be one JSON object."
                    ) from None
                if not isinstance(row, dict):
                    raise ConfigError(
                        f"{path} line {number} is a {type(row).__name__}, not a JSON object. "
                        "Use JSON Lines: one object per line, e.g. "
                        '{"problem": "...", "answer": "..."}.'
                    )
                rows.append(row)
        return rows
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read benchmark file {path}: {exc}") from exc


def _find_file(benchmark: str, data_dir: Path) -> Path:
    for suffix in (".jsonl", ".csv"):
        candidate = data_dir / f"{benchmark}{suffix}"
        if candidate.is_file():
            return candidate
    hf = (
        f" or load it from the hub with hf_datasets=true ({HF_IDS[benchmark]})"
        if (benchmark in HF_IDS)
        else ""
    )
    raise ConfigError(
        f"No data for benchmark {benchmark!r}: put {benchmark}.jsonl (or .csv) in {data_dir} "
        f"(set data_dir=...){hf}. The project ships no benchmark data."
    )


def _hf_rows(benchmark: str) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError("hf_datasets=true needs `pip install datasets`.") from exc
    if benchmark == "gpqa_diamond":
        return list(datasets.load_dataset(HF_IDS[benchmark], "gpqa_diamond", split="train"))
    return list(datasets.load_dataset(HF_IDS[benchmark], split="test"))


def _math_problem(benchmark: str, index: int, row: dict[str, Any]) -> Problem:
    question = row.get("problem") or row.get("question") or row.get("Problem")
    gold = row.get("answer", row.get("Answer"))
    if gold is None and "solution" in row:
        gold = last_boxed_answer(str(row["solution"]))
    if not question or gold is None:
        raise ConfigError(
            f"{benchmark} row {index} needs 'problem' and 'answer' (or a 'solution' with a "
            f"\\boxed{{}} answer); it has {sorted(row)}."
        )
    if isinstance(gold, float) and gold.is_integer():
        gold = int(gold)
    return Problem(benchmark, index, str(question), str(gold))


def _choice_problem(benchmark: str, index: int, row: dict[str, Any], seed: int) -> Problem:
    keys = [
        "Question",
        "Correct Answer",
        "Incorrect Answer 1",
        "Incorrect Answer 2",
        "Incorrect Answer 3",
    ]
    missing = [k for k in keys if not str(row.get(k, "")).strip()]
    if missing:
        raise ConfigError(f"{benchmark} row {index} lacks {missing}; GPQA files need {keys}.")
    options = [str(row[k]).strip() for k in keys[1:]]
    order = list(range(4))
    random.Random(f"{seed}-{index}").shuffle(order)  # fixed per question
    shuffled = [options[i] for i in order]
    gold = LETTERS[order.index(0)]
    text = (
        str(row["Question"]).strip()
        + "\n\n"
        + "\n".join(f"({LETTERS[i]}) {choice}" for i, choice in enumerate(shuffled))
    )
    return Problem(benchmark, index, text, gold)


def load_benchmark(
    benchmark: str, data_dir: Path, limit: int | None = None, seed: int = 0, hub: bool = False
) -> list[Problem]:
    """The first `limit` problems of `benchmark`, from `data_dir` or (hub=True) the HF hub."""
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"Unknown benchmark {benchmark!r}. Choose from {', '.join(BENCHMARKS)}.")
    rows = _hf_rows(benchmark) if hub else _rows(_find_file(benchmark, data_dir))
    rows = rows[:limit] if limit else rows
    if benchmark in CHOICE_BENCHMARKS:
        return [_choice_problem(benchmark, i, r, seed) for i, r in enumerate(rows)]
    return [_math_problem(benchmark, i, r) for i, r in enumerate(rows)]
