"""Grid search: the whole product of the space's grid points, in a fixed order."""

from __future__ import annotations

import itertools
from typing import Any

from lrsearch.search.catalog import complete_config
from lrsearch.search.errors import SpecError
from lrsearch.search.strategies.base import Strategy, StrategySpec, config_key


class GridStrategy(Strategy):
    name = "grid"
    grid = True
    default_max_trials = None  # the whole product

    def __init__(self, spec: StrategySpec) -> None:
        super().__init__(spec)
        assert spec.space is not None
        names = list(spec.space.dims)
        axes = [spec.space.dims[n].grid_points() for n in names]
        seen: set[str] = set()
        self._points: list[dict[str, Any]] = []
        # lr varies slowest, so the first trials already span the learning rates.
        for values in itertools.product(*axes):
            config = complete_config(dict(zip(names, values)), spec.epochs)
            key = config_key(config)
            if key not in seen:  # parameters that don't apply collapse to one point
                seen.add(key)
                self._points.append(config)
        self.size = len(self._points)  # distinct points of the whole product
        if spec.max_trials is not None:
            self._points = self._points[: spec.max_trials]
        self._next = 0

    def check_budget(self, max_trials: int) -> None:
        if max_trials < self.size:
            # Cutting a grid short would keep only its lowest learning rates (lr varies slowest).
            raise SpecError(("max_trials",), f"is {max_trials} but the grid has {self.size} points; grid search "
                                             "runs the whole product (omit max_trials, use fewer points, or use "
                                             "random search for a budget)")

    def suggest(self) -> dict[str, Any] | None:
        if self._next >= len(self._points):
            return None
        self._next += 1
        return dict(self._points[self._next - 1])

    def total(self) -> int:
        return len(self._points)

    def state_dict(self) -> dict[str, Any]:
        return {"next": self._next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._next = int(state.get("next", 0))
