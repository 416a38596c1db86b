#!/usr/bin/env python3
"""Where a uniform magnet of weight c holds Kuhn self-play: the logit (entropy-regularised)
equilibrium of one-hand Kuhn with the chips reward scaled to [-1, 1], and its exploitability.

At a fixed point of the learner's loss (policy gradient + c x KL(policy || uniform) per
decision), each information set's logit equals (Q(bet/call) - Q(check/fold)) / c, with Q the
expected scaled reward given the information set is reached. A damped fixed-point iteration
finds it; the exploitability (NashConv/2, chips) comes from ../shared/tools/kuhn_budget.py.
Below c ~ 0.05 the damped iteration stops converging (plain self-play cycles), so those rows
are not equilibria.

    python docs/results/cpu_selfplay_anneal/regularised_equilibrium.py
"""

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "shared" / "tools"))
from kuhn_budget import exploitability, infoset


def action_values(p: np.ndarray) -> np.ndarray:
    """Q(action 0), Q(action 1) at each of the 12 information sets, scaled chips, for the acting
    player, given the set is reached (p: probability of bet/call at each)."""
    reach, q = np.zeros(12), np.zeros((12, 2))
    for c0, c1 in itertools.permutations(range(3), 2):
        w = 1 if c0 > c1 else -1
        i, jb, jc, k = (
            infoset(0, c0, ""),
            infoset(1, c1, "b"),
            infoset(1, c1, "c"),
            infoset(0, c0, "cb"),
        )
        reach[jb] += p[i]
        q[jb] += p[i] * np.array([-1, -2 * w]) / 2  # facing a bet: fold, call
        r = (1 - p[i]) * p[jc]
        reach[k] += r
        q[k] += r * np.array([-1, 2 * w]) / 2  # check-bet: fold, call
        reach[jc] += 1 - p[i]
        q[jc] += (1 - p[i]) * np.array([-w, -(p[k] * 2 * w - (1 - p[k]))]) / 2  # check, bet
        bet = p[jb] * 2 * w + (1 - p[jb])
        check = (1 - p[jc]) * w + p[jc] * (p[k] * 2 * w - (1 - p[k]))
        reach[i] += 1
        q[i] += np.array([check, bet]) / 2
    return q / np.maximum(reach, 1e-12)[:, None]


def logit_equilibrium(c: float, iters: int = 20000, damp: float = 0.05) -> np.ndarray:
    theta = np.zeros(12)
    for _ in range(iters):
        q = action_values(1 / (1 + np.exp(-theta)))
        theta = (1 - damp) * theta + damp * (q[:, 1] - q[:, 0]) / c
    return 1 / (1 + np.exp(-theta))


if __name__ == "__main__":
    for c in (0.3, 0.2, 0.1, 0.05):
        print(f"magnet {c:4.2f}: exploitability {exploitability(logit_equilibrium(c)):.3f} chips")
