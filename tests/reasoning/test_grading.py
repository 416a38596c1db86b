"""Benchmark grading: math-verify on a table of tricky (output, gold) pairs, and GPQA letters."""

from __future__ import annotations

import pytest

from spiral_games.reasoning.grading import (
    extract_choice,
    grade_choice,
    grade_math,
    last_boxed_answer,
)

MATH = [
    ("so the answer is \\boxed{\\frac{1}{2}}", "0.5", True),
    ("\\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{\\dfrac{14}{3}}", "\\frac{14}{3}", True),
    ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", True),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}", True),
    ("\\boxed{(1, 3]}", "(1,3]", True),
    ("\\boxed{[1, 3]}", "(1,3]", False),
    ("\\boxed{2, 3}", "3,2", True),
    ("\\boxed{3}", "3,2", False),
    ("\\boxed{27}", "27.0", True),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("The answer is 5.", "5", False),  # no box: the prompt asks for one
    ("\\boxed{}", "5", False),
    ("first \\boxed{4} then \\boxed{5}", "5", True),
    ("\\boxed{6}", "5", False),
]


@pytest.mark.parametrize(("output", "gold", "correct"), MATH)
def test_math_grading_table(output, gold, correct):
    assert grade_math(output, gold).correct is correct


def test_minerva_gold_is_the_last_box_of_the_solution():
    assert last_boxed_answer("x = \\boxed{1} ... so s=\\boxed{1.6} \\mathrm{~cm}") == "1.6"


CHOICES = [
    ("I think \\boxed{B}", "B"),
    ("\\boxed{\\text{C}}", "C"),
    ("Reasoning...\nAnswer: D", "D"),
    ("the answer is (A).", "A"),
    ("\\boxed{A or B}", None),
    ("no idea", None),
]


@pytest.mark.parametrize(("output", "letter"), CHOICES)
def test_choice_extraction(output, letter):
    assert extract_choice(output) == letter
    assert grade_choice(output, "B").correct is (letter == "B")
