"""A learning-rate window some decades either side of a rate, and a rate's position in it (log scale).

``auto`` centres one on each optimizer's range-test suggestion, ``bayesian``'s ``lr_window_decades``
on each optimizer's best lr so far. Both show the model the position in [0, 1], the same
distribution for every optimizer, so what it learns about one window carries to the others.
"""

from __future__ import annotations

import math

MAX_WINDOW_DECADES = 6.0
Window = tuple[float, float]


def window_around(centre: float, decades: float, low: float, high: float) -> Window:
    """``decades`` either side of ``centre``, cut to [low, high]."""
    width = 10.0 ** decades
    return max(low, centre / width), min(high, centre * width)


def position_in(lr: float, window: Window) -> float:
    """Where ``lr`` lies in ``window`` on a log scale, clamped to [0, 1]."""
    low, high = window
    return min(1.0, max(0.0, math.log(float(lr) / low) / math.log(high / low)))


def lr_at_position(u: float, window: Window) -> float:
    """The rate at position ``u`` of ``window`` on a log scale."""
    low, high = window
    return float(low * (high / low) ** float(u))
