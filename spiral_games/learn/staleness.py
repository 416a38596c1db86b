"""Bounded staleness for overlapped self-play (`train.max_staleness`). Pure: standard library.

The learner's version is the number of updates it has made; a turn's staleness is that minus
the version of the weights that generated it. An episode is as stale as its oldest trained turn,
and is kept or dropped whole, so the RAE baselines only ever see episodes that are trained on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from spiral_games.types import Episode, Turn


def trained_turns(episode: Episode) -> list[Turn]:
    """The turns that become samples: the trained roles' turns with generated tokens."""
    return [t for t in episode.turns if t.role in episode.trained_roles and t.response_ids]


def staleness(episode: Episode, learner_version: int) -> int:
    """Versions between the oldest weights that played a trained turn and the learner's."""
    versions = [t.version for t in trained_turns(episode)]
    return learner_version - min(versions, default=learner_version)


def split_stale(
    episodes: Iterable[Episode], learner_version: int, bound: int
) -> tuple[list[Episode], list[Episode]]:
    """(kept, dropped): episodes at most `bound` versions behind `learner_version`, in order."""
    kept: list[Episode] = []
    dropped: list[Episode] = []
    for episode in episodes:
        (kept if staleness(episode, learner_version) <= bound else dropped).append(episode)
    return kept, dropped


def staleness_metrics(
    collected: Sequence[Episode], dropped: Sequence[Episode], learner_version: int
) -> dict[str, float]:
    """`rollout/staleness_<s>`: samples (trained turns) collected at each staleness `s`;
    their mean; and the samples and episodes dropped for being too stale."""
    counts: Counter[int] = Counter(
        learner_version - t.version for e in collected for t in trained_turns(e)
    )
    total = sum(counts.values())
    return {
        **{f"rollout/staleness_{s}": float(n) for s, n in sorted(counts.items())},
        "rollout/staleness_mean": sum(s * n for s, n in counts.items()) / total if total else 0.0,
        "rollout/dropped_samples": float(sum(len(trained_turns(e)) for e in dropped)),
        "rollout/dropped_episodes": float(len(dropped)),
    }
