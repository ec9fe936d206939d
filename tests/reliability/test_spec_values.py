"""Any JSON value at any place of a JobSpec, for every strategy: a 201 or a 422 naming a field, never a
5xx, and a rejected spec writes nothing. Schemathesis (test_fuzz) follows the OpenAPI schema, which
types `space`, `options` and `early_stopping` (`configs` stay free-form) and so sends what fits it;
this puts any value anywhere inside them."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrsearch.service.app import create_app
from lrsearch.service.config import Settings

BASES = {
    "random": {"workload": "mlp-digits", "strategy": "random", "max_trials": 4, "epochs": 3,
               "space": {"lr": {"low": 1e-4, "high": 1.0}, "optimizer": ["sgd", "rmsprop"],
                         "schedule": ["constant", "step"], "momentum": {"low": 0.1, "high": 0.9},
                         "step_size": {"values": [1, 2]}, "warmup_fraction": {"values": [0.0, 0.1]}},
               "early_stopping": {"kind": "asha", "grace_epochs": 1, "reduction_factor": 3}},
    "grid": {"workload": "mlp-digits", "strategy": "grid", "epochs": 3,
             "space": {"lr": {"low": 1e-3, "high": 1.0, "num": 3}, "optimizer": ["sgd"],
                       "eta_min": {"values": [0.0]}, "schedule": ["cosine"]}},
    "bayesian": {"workload": "mlp-digits", "strategy": "bayesian", "max_trials": 6, "epochs": 3,
                 "space": {"lr": {"low": 1e-4, "high": 1.0}, "gamma": {"low": 0.1, "high": 0.9},
                           "schedule": ["exponential"]},
                 "options": {"sampler": "tpe", "n_startup_trials": 2},
                 "early_stopping": {"kind": "hyperband", "grace_epochs": 1, "reduction_factor": 2}},
    "manual": {"workload": "mlp-digits", "strategy": "manual", "epochs": 3,
               "configs": [{"lr": 0.1, "optimizer": "sgd", "schedule": "step", "step_size": 1, "gamma": 0.5},
                           {"lr": 0.01, "optimizer": "adam", "warmup_fraction": 0.1}]},
    "range_test": {"workload": "mlp-digits", "strategy": "range_test", "epochs": 3,
                   "space": {"lr": {"low": 1e-6, "high": 1.0}, "optimizer": ["sgd", "adam"]},
                   "options": {"num_steps": 20, "repeats": 1, "divergence_factor": 4, "verify": False}},
    "auto": {"workload": "mlp-digits", "strategy": "auto", "max_trials": 8, "epochs": 3,
             "space": {"optimizer": ["adam"]}, "options": {"window_decades": 1, "num_steps": 20},
             "early_stopping": {"kind": "median", "grace_epochs": 1, "min_trials": 2},
             "resources": {"cpu": 1, "gpu": 0}},
}


def _places(value: object, path: tuple = ()) -> list[tuple]:
    """Every path into a spec: each key and list index, nested."""
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _places(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _places(v, path + (i,))
    return out


PLACES = [(name, place) for name, base in BASES.items() for place in _places(base)]

# Any JSON: unbounded integers, floats near float's limits, text with any code point (lone surrogates
# included: JSON can carry them), nested lists and objects.
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**400)
           | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0, -1, 1e-320, 1e308, -0.0])
           | st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=8)
           | st.sampled_from(["sgd", "step", "asha", "tpe", "gp", "", "lr", "\ud800"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6) | st.sampled_from(["lr", "low", "kind", "\udfff"]),
                                             inner, max_size=3), max_leaves=6)

_db = Path(tempfile.mkdtemp()) / "spec-values.db"
_client = TestClient(create_app(Settings(database_url=f"sqlite:///{_db}", run_jobs=False)),
                     raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """The app's lifespan (engine, migrations) once for the module, not once per example."""
    with _client as c:
        yield c


def _put(spec: dict, place: tuple, value: object) -> dict:
    spec = json.loads(json.dumps(spec))
    target = spec
    for key in place[:-1]:
        target = target[key]
    target[place[-1]] = value
    return spec


@given(where=st.sampled_from(PLACES), value=json_values)
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_value_anywhere_is_a_201_or_a_422(client: TestClient, where: tuple, value: object) -> None:
    name, place = where
    spec = _put(BASES[name], place, value)
    before = client.get("/api/v1/jobs").json()["total"]
    # ensure_ascii: a lone surrogate travels as its JSON escape, as a client would send it.
    r = client.post("/api/v1/jobs", content=json.dumps(spec).encode(), headers={"content-type": "application/json"})
    assert r.status_code in (201, 422), (r.status_code, r.text[:500], spec)
    if r.status_code == 422:
        assert r.json()["message"], r.text
        assert all(d["loc"][0] == "body" and d["msg"] for d in r.json()["detail"]), r.text
        assert client.get("/api/v1/jobs").json()["total"] == before
