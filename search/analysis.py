"""A best learning rate you can trust and transfer: its interval, the best per optimizer, and
how to carry it to another batch size.

Pure Python (no numpy): a job has at most thousands of trials and the fits are 3x3.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# lr_interval fits the best FIT_FRACTION of the trials, and at least FIT_MIN_POINTS of them.
FIT_FRACTION = 0.3
FIT_MIN_POINTS = 5
# The default tolerance is at least this fraction of the best loss: below ~2%, differences in
# validation loss between neighbouring rates are within what the seed alone moves.
RELATIVE_TOLERANCE = 0.02


def lr_interval(
    points: Iterable[tuple[float, float]],
    best_lr: float,
    best_loss: float,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """The learning rates whose validation loss is indistinguishable from the best:
    ``{"low", "high", "method", "tolerance", "points_used"}`` plus, for a fit, ``"vertex_lr"``.

    ``points`` are ``(lr, val_loss)`` of trials (those of the best's optimizer, or all);
    non-finite losses and non-positive rates are ignored. ``tolerance`` is in loss units;
    default ``max(2% of |best_loss|, the fit's residual standard deviation)``.

    Method ``"quadratic_fit"``: a quadratic in log10(lr) fitted by weighted least squares to the
    best ``max(5, 30%)`` trials (weights fall linearly with rank, from 1 for the best to 0.5),
    then the rates where the fitted curve is within ``tolerance`` of its minimum, clipped to the
    span of the fitted rates (no extrapolation). Loss against log rate is close to a parabola
    near its minimum, and the fit pools the noise of neighbouring trials that a comparison of
    single trials would take at face value. The fit is refused when there are fewer than 3
    distinct rates, when the parabola opens downwards (or is flat), or when its vertex lies
    outside the fitted rates; then method ``"within_tolerance"``: the lowest and highest rate
    among trials within ``tolerance`` of ``best_loss``. With no usable point: ``"best_only"``.

    The interval always contains ``best_lr`` (it is widened to it if needed).
    """
    if not _positive_finite(best_lr):
        raise ValueError(f"best_lr must be finite and positive, got {best_lr!r}")
    if not _finite(best_loss):
        raise ValueError(f"best_loss must be finite, got {best_loss!r}")
    if tolerance is not None and not (_finite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be finite and >= 0, got {tolerance!r}")

    usable = sorted(
        ((float(lr), float(loss)) for lr, loss in points if _positive_finite(lr) and _finite(loss)),
        key=lambda p: (p[1], p[0]),
    )
    relative = RELATIVE_TOLERANCE * abs(best_loss)
    if not usable:
        tol = relative if tolerance is None else float(tolerance)
        return _contain(best_lr, best_lr, best_lr, "best_only", tol, 0, None)

    k = min(len(usable), max(FIT_MIN_POINTS, math.ceil(FIT_FRACTION * len(usable))))
    fit = _fit_parabola(usable[:k])
    if fit is not None:
        a, b, c, residual_std, x_lo, x_hi = fit
        tol = max(relative, residual_std) if tolerance is None else float(tolerance)
        x_vertex = -b / (2 * a)
        if tol > 0:
            half = math.sqrt(tol / a)
            low_x, high_x = max(x_lo, x_vertex - half), min(x_hi, x_vertex + half)
        else:
            low_x = high_x = x_vertex
        return _contain(10**low_x, 10**high_x, best_lr, "quadratic_fit", tol, k, 10**x_vertex)

    tol = relative if tolerance is None else float(tolerance)
    near = [lr for lr, loss in usable if loss <= best_loss + tol]
    if not near:
        return _contain(best_lr, best_lr, best_lr, "within_tolerance", tol, 0, None)
    return _contain(min(near), max(near), best_lr, "within_tolerance", tol, len(near), None)


def _contain(
    low: float, high: float, best_lr: float, method: str, tol: float, n: int, vertex: float | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "low": min(low, best_lr),
        "high": max(high, best_lr),
        "method": method,
        "tolerance": tol,
        "points_used": n,
    }
    if vertex is not None:
        out["vertex_lr"] = vertex
    return out


def _fit_parabola(
    points: Sequence[tuple[float, float]],
) -> tuple[float, float, float, float, float, float] | None:
    """Weighted least squares ``loss ~ a x^2 + b x + c`` with ``x = log10(lr)`` on points sorted
    best first: ``(a, b, c, residual_std, x_min, x_max)``, or None when the fit is degenerate
    (fewer than 3 distinct x, singular, ``a <= 0``, or the vertex outside [x_min, x_max])."""
    xs = [math.log10(lr) for lr, _ in points]
    ys = [loss for _, loss in points]
    if len({round(x, 12) for x in xs}) < 3:
        return None
    k = len(points)
    weights = [1.0 - 0.5 * i / (k - 1) for i in range(k)]  # k >= 3 here
    # Centre x so the normal equations stay well conditioned whatever the rates' magnitude.
    mean_x = sum(w * x for w, x in zip(weights, xs)) / sum(weights)
    us = [x - mean_x for x in xs]
    sums = [sum(w * u**p for w, u in zip(weights, us)) for p in range(5)]
    rhs = [sum(w * y * u**p for w, y, u in zip(weights, ys, us)) for p in range(3)]
    # Unknowns (c, b, a) of c + b u + a u^2.
    matrix = [[sums[r + col] for col in range(3)] for r in range(3)]
    solution = _solve3(matrix, rhs)
    if solution is None:
        return None
    c_u, b_u, a = solution
    if not a > 0:
        return None
    vertex_u = -b_u / (2 * a)
    if not min(us) <= vertex_u <= max(us):
        return None
    residuals = [y - (c_u + b_u * u + a * u * u) for u, y in zip(us, ys)]
    if k > 3:
        residual_std = math.sqrt(
            sum(w * r * r for w, r in zip(weights, residuals)) / sum(weights) * k / (k - 3)
        )
    else:
        residual_std = 0.0
    # Back to x: a (x - m)^2 + b_u (x - m) + c_u.
    b = b_u - 2 * a * mean_x
    c = c_u - b_u * mean_x + a * mean_x**2
    return a, b, c, residual_std, min(xs), max(xs)


def _solve3(matrix: list[list[float]], rhs: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None when (nearly) singular."""
    m = [row[:] + [r] for row, r in zip(matrix, rhs)]
    scale = max(abs(v) for row in matrix for v in row) or 1.0
    for col in range(3):
        pivot = max(range(col, 3), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) <= 1e-12 * scale:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, 3):
            f = m[r][col] / m[col][col]
            for j in range(col, 4):
                m[r][j] -= f * m[col][j]
    out = [0.0, 0.0, 0.0]
    for r in (2, 1, 0):
        out[r] = (m[r][3] - sum(m[r][j] * out[j] for j in range(r + 1, 3))) / m[r][r]
    return out


def per_optimizer_best(trials: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The best trial of each optimizer: ``{optimizer: {"trial", "lr", "val_loss", "epoch",
    "config"}}``, best optimizer first (then by name).

    ``trials`` are dicts with ``"number"``, ``"config"`` (holding ``"optimizer"`` and ``"lr"``),
    ``"val_loss"`` and optionally ``"best_epoch"``; trials without a finite ``val_loss`` are
    skipped. Ties go to the lower trial number, as the job's best does.
    """
    best: dict[str, Mapping[str, Any]] = {}
    for trial in trials:
        loss = trial.get("val_loss")
        if not _finite(loss):
            continue
        optimizer = trial["config"]["optimizer"]
        current = best.get(optimizer)
        if current is None or (loss, trial["number"]) < (current["val_loss"], current["number"]):
            best[optimizer] = trial
    ordered = sorted(best.items(), key=lambda item: (item[1]["val_loss"], item[0]))
    return {
        optimizer: {
            "trial": trial["number"],
            "lr": float(trial["config"]["lr"]),
            "val_loss": float(trial["val_loss"]),
            "epoch": trial.get("best_epoch"),
            "config": dict(trial["config"]),
        }
        for optimizer, trial in ordered
    }


# How a learning rate scales with the batch size, by optimizer.
#
# linear (sgd): Goyal et al. 2017, "Accurate, Large Minibatch SGD". An SGD step moves by
#   lr x (mean gradient); k times the batch with k times the rate takes about the step that k
#   small steps would have taken, as long as the gradient changes little over them.
# sqrt (adam, adamw, rmsprop, adagrad): the adaptive methods divide the step by a running
#   root mean square of the gradients, so the step's size no longer grows with the gradient's
#   and the linear argument fails; what the batch changes is the gradient noise, whose
#   variance falls as 1/batch. Keeping the noise scale of the update fixed gives lr x sqrt(k)
#   (Hoffer et al. 2017; Malladi et al. 2022, "On the SDEs and Scaling Rules for Adaptive
#   Gradient Algorithms", derive the square-root rule for RMSprop and Adam). Adagrad has the
#   same per-coordinate normalisation (with a growing sum rather than an average), so it is
#   put with them rather than with SGD.
# Both rules are heuristics that hold for moderate changes of the batch (say up to 8x either
# way, and below the critical batch size); confirm the transferred rate with a short search.
TRANSFER_RULES: dict[str, str] = {
    "sgd": "linear",
    "adam": "sqrt",
    "adamw": "sqrt",
    "rmsprop": "sqrt",
    "adagrad": "sqrt",
}


def transfer_lr(lr: float, optimizer: str, from_batch: int, to_batch: int) -> dict[str, Any]:
    """The learning rate for batch size ``to_batch`` given a good ``lr`` at ``from_batch``:
    ``{"lr", "rule", "from_batch_size", "to_batch_size"}``, ``rule`` being ``"linear"``
    (lr x to/from, sgd) or ``"sqrt"`` (lr x sqrt(to/from), the adaptive optimizers); see
    TRANSFER_RULES. ValueError naming the argument for a bad one."""
    if not _positive_finite(lr):
        raise ValueError(f"lr must be finite and positive, got {lr!r}")
    if optimizer not in TRANSFER_RULES:
        raise ValueError(f"optimizer {optimizer!r} is unknown; known: {', '.join(TRANSFER_RULES)}")
    for name, value in (("from_batch", from_batch), ("to_batch", to_batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    rule = TRANSFER_RULES[optimizer]
    ratio = to_batch / from_batch
    factor = ratio if rule == "linear" else math.sqrt(ratio)
    return {"lr": float(lr) * factor, "rule": rule, "from_batch_size": from_batch, "to_batch_size": to_batch}


def _finite(value: Any) -> bool:
    # numbers.Real: numpy's scalars too (np.float32 is no float subclass).
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _positive_finite(value: Any) -> bool:
    return _finite(value) and value > 0
