"""Role-conditioned advantage estimation (RAE), SPIRAL (arXiv 2506.24119) Sec. 3.3, Eq. 4-5.

One EMA baseline per (game, role): b <- decay * b + (1 - decay) * R, read before the update;
every turn of that role in that episode gets A = R - b. Pure: standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from spiral_games.types import Episode, Sample


@dataclass
class RoleBaselines:
    """The run's single RAE state, kept on the driver and saved in checkpoints."""

    decay: float  # train.rae_decay
    values: dict[tuple[str, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.decay < 1:
            raise ValueError(f"RAE decay must be in [0, 1), got {self.decay}")

    def advantage(self, game: str, role: int, ret: float) -> float:
        """A = R - b(game, role), then update b with R (Eq. 4-5)."""
        baseline = self.values.get((game, role), 0.0)
        self.values[(game, role)] = self.decay * baseline + (1 - self.decay) * ret
        return ret - baseline

    def state_dict(self) -> dict[str, object]:
        """JSON-friendly state."""
        return {"decay": self.decay, "values": [[g, r, v] for (g, r), v in self.values.items()]}

    @classmethod
    def from_state_dict(cls, state: dict) -> RoleBaselines:
        """Inverse of `state_dict`."""
        return cls(decay=state["decay"], values={(g, int(r)): v for g, r, v in state["values"]})


def episode_samples(
    episodes: Iterable[Episode],
    baselines: RoleBaselines | None,
    gamma: float | Mapping[str, float] = 1.0,
    drop_zero: bool = False,
) -> list[Sample]:
    """Per-turn samples of every trained role, with RAE advantages.

    Args:
        baselines: the run's RAE state (updated in place); None disables RAE (A = R).
        gamma: discount per remaining turn of the same role: A_t = gamma^k (R - b); one
            for every game, or game -> its discount (a game it leaves out: 1).
        drop_zero: leave out samples whose advantage is exactly zero.
    """
    samples = []
    for episode in episodes:
        discount = gamma if isinstance(gamma, float | int) else gamma.get(episode.game, 1.0)
        for role in episode.trained_roles:
            ret = episode.returns[role]
            adv = baselines.advantage(episode.game, role, ret) if baselines else ret
            turns = [t for t in episode.turns if t.role == role and t.response_ids]
            for k, turn in enumerate(turns):
                value = adv * discount ** (len(turns) - 1 - k)
                if drop_zero and value == 0:
                    continue
                samples.append(
                    Sample(
                        turn.prompt_ids,
                        turn.response_ids,
                        turn.logprobs,
                        value,
                        episode.game,
                        role,
                        turn.version,
                        turn.choice_ids,
                    )
                )
    return samples
