"""Grading benchmark answers: math with math-verify, multiple choice by letter."""

from __future__ import annotations

import re
from dataclasses import dataclass

from spiral_games.play.parsing import extract_boxed

_ANSWER_LINE = re.compile(r"answer\s*(?:is|:)?\s*\(?([ABCD])\)?\b", re.IGNORECASE)


@dataclass(frozen=True)
class Grade:
    extracted: str | None  # what was read from the response (None: nothing gradable)
    correct: bool


def grade_math(response: str, gold: str) -> Grade:
    """Compare the last \\boxed{} of `response` with `gold` using math-verify.

    Equivalent forms match (\\frac vs decimals, intervals, sets, \\text{}); a response without
    a \\boxed{} answer is wrong, as the prompt asks for one.
    """
    from math_verify import parse, verify

    boxed = extract_boxed(response)
    if boxed is None or not boxed.strip():
        return Grade(None, False)
    gold_expr = parse(gold if gold.strip().startswith("$") else f"${gold}$")
    answer_expr = parse(f"\\boxed{{{boxed}}}")
    try:
        return Grade(
            boxed, bool(gold_expr) and bool(answer_expr) and verify(gold_expr, answer_expr)
        )
    except Exception:  # math-verify can raise on exotic expressions: count as wrong
        return Grade(boxed, False)


def extract_choice(response: str) -> str | None:
    """The chosen letter A-D from the last \\boxed{} or an 'Answer: X' line."""
    boxed = extract_boxed(response)
    if boxed is not None:
        letters = re.findall(r"\b([ABCD])\b", re.sub(r"\\text\{([^}]*)\}", r"\1", boxed))
        if len(set(letters)) == 1:
            return letters[0]
    found = _ANSWER_LINE.findall(response)
    return found[-1].upper() if found else None


def grade_choice(response: str, gold_letter: str) -> Grade:
    """Multiple-choice grading: correct when the extracted letter is the gold one."""
    letter = extract_choice(response)
    return Grade(letter, letter == gold_letter)


def last_boxed_answer(solution: str) -> str | None:
    """The gold answer of a worked solution (Minerva Math keeps it in the last \\boxed{})."""
    return extract_boxed(solution)
