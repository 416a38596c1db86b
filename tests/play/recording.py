"""A test policy wrapper shared by the game-analysis tests."""

from __future__ import annotations


class Recording:
    """Wraps a policy and keeps every batch it is asked."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.batches = []

    def act(self, observations):
        self.batches.append(list(observations))
        return self.policy.act(observations)
