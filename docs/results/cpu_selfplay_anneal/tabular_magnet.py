#!/usr/bin/env python3
"""Sizing the annealed magnet before the run: ../shared/tools/kuhn_budget.py's tabular self-play
learner (REINFORCE, per-role EMA baseline, chips scaled to [-1, 1]) with the recipe's uniform
magnet added, c x KL(policy || uniform) per decision, c falling in a straight line from `start`
to `final` over the steps. 30 steps of 128 hands, lr 3, 20 seeds, exact exploitability.

    python docs/results/cpu_selfplay_anneal/tabular_magnet.py
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "shared" / "tools"))
from kuhn_budget import exploitability, play


def train(steps: int, games: int, lr: float, seed: int, start: float, final: float) -> float:
    rng = np.random.default_rng(seed)
    theta, baseline = np.zeros(12), [0.0, 0.0]
    for step in range(steps):
        c = start + (final - start) * step / max(steps - 1, 1)
        p = 1 / (1 + np.exp(-theta))
        grad, n, returns = np.zeros(12), 0, ([], [])
        for _ in range(games):
            decisions, chips0 = play(p, rng)
            for player, i, aggressive in decisions:
                r = (chips0 if player == 0 else -chips0) / 2
                # policy gradient, minus the gradient of c x KL(p || 1/2) in the logit
                grad[i] += (r - baseline[player]) * (float(aggressive) - p[i])
                grad[i] -= c * p[i] * (1 - p[i]) * theta[i]
                returns[player].append(r)
                n += 1
        for player in (0, 1):
            baseline[player] = 0.95 * baseline[player] + 0.05 * float(np.mean(returns[player]))
        theta += lr * 12 * grad / n
    return exploitability(1 / (1 + np.exp(-theta)))


if __name__ == "__main__":
    for start, final in ((0.3, 0.3), (0.3, 0.05), (0.0, 0.0)):
        ex = np.array([train(30, 128, 3.0, s, start, final) for s in range(20)])
        se = ex.std(ddof=1) / np.sqrt(len(ex))
        print(f"magnet {start} -> {final}: exploitability {ex.mean():.3f} +- {se:.3f} (20 seeds)")
