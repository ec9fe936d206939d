"""Random search: seeded, reproducible, never the same candidate twice."""

from __future__ import annotations

import math
import random
from typing import Any

from lrsearch.search.catalog import complete_config
from lrsearch.search.space import Categorical, Numeric
from lrsearch.search.strategies.base import Strategy, StrategySpec, config_key

# A small finite space can run out of new points; give up after this many repeats in a row.
_MAX_REPEATS = 1000


class RandomStrategy(Strategy):
    name = "random"

    def __init__(self, spec: StrategySpec) -> None:
        super().__init__(spec)
        assert spec.space is not None
        self._rng = random.Random(spec.seed)
        # Candidates drawn so far, to never draw one twice: only a finite space can repeat one (a
        # real range practically never does), so a 100,000-trial job over a range keeps no list.
        self._seen: set[str] | None = None if spec.space.continuous else set()
        self._issued = 0
        self._exhausted = False

    def _sample_dim(self, dim: Numeric | Categorical) -> Any:
        if isinstance(dim, Categorical):
            return self._rng.choice(dim.choices)
        if dim.values is not None:
            return self._rng.choice(dim.values)
        assert dim.low is not None and dim.high is not None
        if dim.log:
            x = math.exp(self._rng.uniform(math.log(dim.low), math.log(dim.high)))
        else:
            x = self._rng.uniform(dim.low, dim.high)
        if dim.integer:
            return int(round(x))
        return min(max(x, dim.low), dim.high)

    def _draw(self) -> dict[str, Any] | None:
        assert self.spec.space is not None
        for _ in range(_MAX_REPEATS):
            raw = {name: self._sample_dim(dim) for name, dim in self.spec.space.dims.items()}
            config = complete_config(raw, self.spec.epochs)
            if self._seen is None:
                return config
            key = config_key(config)
            if key not in self._seen:
                self._seen.add(key)
                return config
        return None

    def suggest(self) -> dict[str, Any] | None:
        if self._exhausted or (self.spec.max_trials is not None and self._issued >= self.spec.max_trials):
            return None
        config = self._draw()
        if config is None:
            self._exhausted = True
            return None
        self._issued += 1
        return config

    def state_dict(self) -> dict[str, Any]:
        return {"issued": self._issued}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Replaying the seeded draws restores the generator and the seen set exactly.
        self.__init__(self.spec)  # type: ignore[misc]  # back to a fresh strategy of the same spec
        for _ in range(int(state.get("issued", 0))):
            self.suggest()
