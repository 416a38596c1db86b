"""Action parsing: a table of tricky outputs, and fuzzing that it never raises."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spiral_games.play.parsing import extract_boxed, parse_boxed_action, parse_mentioned_action

KUHN = ["[check]", "[bet]"]
TTT = ["[0]", "[4]", "[8]"]

TABLE = [
    ("I will bet. \\boxed{[bet]}", KUHN, "[bet]"),
    ("\\boxed{bet}", KUHN, "[bet]"),
    ("\\boxed{ [ BET ] }", KUHN, "[bet]"),
    ("\\boxed{\\text{check}}", KUHN, "[check]"),
    ("\\boxed{\\textbf{[Check]}}", KUHN, "[check]"),
    ("first \\boxed{[check]} then finally \\boxed{[bet]}", KUHN, "[bet]"),
    ("\\boxed{\\boxed{[bet]}}", KUHN, "[bet]"),
    ("\\boxed {[check]}", KUHN, "[check]"),
    ("$\\boxed{[4]}$", TTT, "[4]"),
    ("\\boxed{4}", TTT, "[4]"),
    ("\\boxed{'[8]'.}", TTT, "[8]"),
    ("Let me think.\n" + "Because the centre is strong... " * 300 + "\\boxed{[4]}", TTT, "[4]"),
    ("\\boxed{[ｂｅｔ]}", KUHN, "[bet]"),  # full-width unicode folds under NFKC
    ("\\boxed{[bet]", KUHN, "[bet]"),  # closing brace missing (cut-off generation)
    ("\\boxed{[bet]}\\boxed", KUHN, "[bet]"),  # a dangling \boxed without a brace
    ("", KUHN, None),
    ("I bet [bet]", KUHN, None),  # no box: invalid
    ("\\boxed{}", KUHN, None),
    ("\\boxed{[raise]}", KUHN, None),
    ("\\boxed{[4]}", KUHN, None),
    ("\\boxed{[bet] or [check]}", KUHN, None),
    ("\\boxed{[5]}", TTT, None),
    ("🂡 \\boxed{🂡}", KUHN, None),
]


@pytest.mark.parametrize(("response", "legal", "expected"), TABLE)
def test_parser_reads_tricky_outputs(response, legal, expected):
    parsed = parse_boxed_action(response, legal)
    assert parsed.action == expected
    assert (parsed.reason == "") == (expected is not None)


def test_extract_boxed_handles_nesting_and_absence():
    assert extract_boxed("\\boxed{a{b}c}") == "a{b}c"
    assert extract_boxed("no box here") is None
    assert extract_boxed("\\boxed{x} \\boxed{y}") == "y"


def test_free_form_games_get_bracketed_content():
    assert parse_boxed_action("\\boxed{Offer: 1 Wood -> 2 Gold}", None).action == (
        "[Offer: 1 Wood -> 2 Gold]"
    )
    assert parse_boxed_action("\\boxed{  }", None).action is None


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.text(
        alphabet=st.sampled_from(list("\\boxed{}[]text betcheck0123456789 $\n\t\x00é漢🂡")),
        max_size=80,
    )
    | st.text(max_size=200)
)
def test_parser_never_raises_on_random_strings(text):
    for legal in (KUHN, TTT, None):
        parsed = parse_boxed_action(text, legal)
        assert parsed.action is None or legal is None or parsed.action in legal


MENTIONS = [
    ("Your action: [check]", KUHN, "[check]"),
    ("I could [check], but I will [bet].", KUHN, "[bet]"),
    ("I will bet now", KUHN, "[bet]"),  # a bare word counts when nothing is bracketed
    ("[check] is safe. I will bet.", KUHN, "[check]"),  # a bracketed mention beats a bare word
    ("I am betting better", KUHN, None),  # words that merely contain a move do not count
    ("[BET]", KUHN, "[bet]"),
    ("Player 2 chose [check].\nYour available actions: [bet].", KUHN, "[bet]"),
    ("take the centre [4]", TTT, "[4]"),
    ("[44] or [5]", TTT, None),
    ("", KUHN, None),
    ("x" * 100_000 + " [bet]", KUHN, "[bet]"),  # only the tail is searched, the move is in it
]


@pytest.mark.parametrize(("response", "legal", "expected"), MENTIONS)
def test_lenient_fallback_reads_the_last_named_legal_move(response, legal, expected):
    parsed = parse_mentioned_action(response, legal)
    assert parsed.action == expected
    assert parsed.lenient == (expected is not None)
    assert (parsed.reason == "") == (expected is not None)


@settings(max_examples=2_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(alphabet=st.sampled_from(list("[]betcheck048 \n\x00é")), max_size=60))
def test_lenient_fallback_never_raises_and_only_returns_legal_moves(text):
    for legal in (KUHN, TTT):
        parsed = parse_mentioned_action(text, legal)
        assert parsed.action is None or parsed.action in legal
