"""Action parsing: the last \\boxed{...} of a response, normalised and matched to a legal action."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from spiral_games.types import ParsedAction

_BOXED = "\\boxed"
_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|texttt|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_SPACES = re.compile(r"\s+")
MAX_ACTION_CHARS = 2000  # longer boxed content is never a legal action; bounds all later work


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` in `text`, braces balanced; None if there is none.

    An unclosed final box (generation cut off) yields the rest of the text.
    """
    start = text.rfind(_BOXED)
    while start >= 0:
        pos = start + len(_BOXED)
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == "{":
            depth = 0
            for end in range(pos, len(text)):
                if text[end] == "{":
                    depth += 1
                elif text[end] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[pos + 1 : end]
            return text[pos + 1 :]
        start = text.rfind(_BOXED, 0, start)
    return None


def normalize(text: str) -> str:
    """Canonical form for matching: LaTeX text wrappers removed, NFKC, spaces collapsed, lower."""
    text = unicodedata.normalize("NFKC", text[:MAX_ACTION_CHARS])
    previous = None
    while previous != text:
        previous, text = text, _WRAPPERS.sub(r"\1", text)
    text = text.replace("$", "").replace("\\{", "{").replace("\\}", "}")
    text = _SPACES.sub(" ", text).strip(" '\"`.")
    return text.lower()


def _key(action: str) -> str:
    stripped = normalize(action)
    if stripped.startswith("[") and stripped.endswith("]"):
        stripped = stripped[1:-1]
    return stripped.strip()


def match_action(candidate: str, legal: Sequence[str]) -> str | None:
    """The legal action `candidate` names, ignoring case, spacing and surrounding brackets."""
    wanted = _key(candidate)
    for action in legal:
        if _key(action) == wanted:
            return action
    return None


def parse_boxed_action(response: str, legal: Sequence[str] | None) -> ParsedAction:
    """Parse a model response into one of `legal`, or into a bracketed action if `legal` is None.

    Every failure is an invalid move with a reason; this function never raises on any string.
    """
    boxed = extract_boxed(response)
    if boxed is None:
        return ParsedAction(None, "no \\boxed{...} answer found")
    if legal is None:
        cleaned = _SPACES.sub(" ", boxed[:MAX_ACTION_CHARS]).strip()
        if not cleaned:
            return ParsedAction(None, "empty \\boxed{} answer")
        return ParsedAction(cleaned if cleaned.startswith("[") else f"[{cleaned}]")
    action = match_action(boxed, legal)
    if action is None:
        shown = boxed if len(boxed) <= 40 else boxed[:37] + "..."
        return ParsedAction(None, f"{shown!r} is not a legal action; legal: {', '.join(legal)}")
    return ParsedAction(action)


def parse_mentioned_action(response: str, legal: Sequence[str]) -> ParsedAction:
    """The legal action mentioned last in `response` (bracketed mentions first, then bare words).

    The fallback of `action_format: lenient`, for small models that name a move but do not box
    it. Only the response's last MAX_ACTION_CHARS characters are searched.
    """
    tail = normalize(response[-MAX_ACTION_CHARS:])
    best: tuple[int, int, str] | None = None  # (bracketed, end position, action)
    for action in legal:
        key = _key(action)
        if not key:
            continue
        for bracketed, pattern in (
            (1, r"\[\s*" + re.escape(key) + r"\s*\]"),
            (0, r"(?<![\w\[])" + re.escape(key) + r"(?![\w\]])"),
        ):
            for found in re.finditer(pattern, tail):
                candidate = (bracketed, found.end(), action)
                if best is None or candidate[:2] > best[:2]:
                    best = candidate
    if best is None:
        return ParsedAction(
            None, f"no \\boxed{{...}} answer and no legal action named; legal: {', '.join(legal)}"
        )
    return ParsedAction(best[2], lenient=True)
