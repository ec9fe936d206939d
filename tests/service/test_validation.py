"""Bad specs get 422 with a message naming the field, every mistake at once, and write nothing; the
OpenAPI schema describes every field a spec may hold."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from lrsearch.search import STRATEGIES
from lrsearch.search.catalog import OPTIMIZERS, param_specs
from lrsearch.search.early_stopping import EARLY_STOPPERS

GOOD = {"workload": "mlp-digits", "strategy": "random", "max_trials": 4, "epochs": 2,
        "space": {"lr": {"low": 1e-4, "high": 1.0}}}

BAD = [
    ("negative lr", {**GOOD, "space": {"lr": {"low": -0.1, "high": 1.0}}}, "space.lr.low"),
    ("zero lr", {**GOOD, "space": {"lr": {"values": [0.0, 0.1]}}}, "space.lr.values.0"),
    ("low >= high", {**GOOD, "space": {"lr": {"low": 1.0, "high": 0.1}}}, "space.lr.low"),
    ("low == high", {**GOOD, "space": {"lr": {"low": 0.1, "high": 0.1}}}, "space.lr.low"),
    ("unknown optimizer", {**GOOD, "space": {"lr": {"low": 0.01, "high": 1}, "optimizer": ["sgd", "lion"]}},
     "space.optimizer.1"),
    ("unknown schedule", {**GOOD, "space": {"lr": {"low": 0.01, "high": 1}, "schedule": ["warm"]}},
     "space.schedule.0"),
    ("unknown workload", {**GOOD, "workload": "imagenet"}, "workload"),
    ("unknown strategy", {**GOOD, "strategy": "genetic"}, "strategy"),
    ("extra field", {**GOOD, "code": "import os"}, "code"),
    ("extra space key", {**GOOD, "space": {"lr": {"low": 0.01, "high": 1}, "batch": [1]}}, "space.batch"),
    ("missing lr", {**GOOD, "space": {"optimizer": ["sgd"]}}, "space.lr"),
    ("string lr", {**GOOD, "space": {"lr": {"low": "a", "high": 1}}}, "space.lr.low"),
    ("grid without num", {**GOOD, "strategy": "grid"}, "space.lr"),
    ("manual without configs", {**GOOD, "strategy": "manual", "space": None}, "configs"),
    ("manual bad lr", {"workload": "mlp-digits", "strategy": "manual", "configs": [{"lr": -1}]}, "configs.0.lr"),
    ("manual foreign param", {"workload": "mlp-digits", "strategy": "manual",
                              "configs": [{"lr": 0.1, "optimizer": "adam", "momentum": 0.9}]}, "configs.0.momentum"),
    ("too many trials", {**GOOD, "max_trials": 10**6}, "max_trials"),
    ("zero epochs", {**GOOD, "epochs": 0}, "epochs"),
    ("zero concurrency", {**GOOD, "max_concurrent": 0}, "max_concurrent"),
    ("huge grid", {**GOOD, "strategy": "grid", "max_trials": None,  # 120,000 points
                   "space": {"lr": {"low": 1e-5, "high": 1, "num": 1000},
                             "warmup_fraction": {"values": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45]},
                             "schedule": ["constant", "step", "cosine"],
                             "optimizer": ["sgd", "adam", "adamw", "rmsprop"]}}, "space"),
    ("manual optimizer not a name", {"workload": "mlp-digits", "strategy": "manual",
                                     "configs": [{"lr": 0.1, "optimizer": ["sgd"]}]}, "configs.0.optimizer"),
    ("manual schedule not a name", {"workload": "mlp-digits", "strategy": "manual",
                                    "configs": [{"lr": 0.1, "schedule": {"kind": "step"}}]}, "configs.0.schedule"),
    ("manual budget below its configs", {"workload": "mlp-digits", "strategy": "manual", "max_trials": 1,
                                         "configs": [{"lr": 0.1}, {"lr": 0.01}]}, "max_trials"),
    ("grid budget below its points", {**GOOD, "strategy": "grid", "max_trials": 3,
                                      "space": {"lr": {"low": 1e-3, "high": 1, "num": 4}}}, "max_trials"),
    ("range test of one lr", {**GOOD, "strategy": "range_test", "max_trials": None,
                              "space": {"lr": {"values": [0.1]}}}, "space.lr"),
    ("auto over one lr", {**GOOD, "strategy": "auto", "space": {"lr": {"values": [0.1, 0.1]}}}, "space.lr"),
    ("huge eta_min", {**GOOD, "space": {"lr": {"low": 0.01, "high": 1}, "schedule": ["cosine"],
                                        "eta_min": {"values": [1e300]}}}, "space.eta_min"),
    ("early stopping in one epoch", {**GOOD, "epochs": 1, "early_stopping": {"kind": "asha"}}, "early_stopping"),
    ("huge reduction factor", {**GOOD, "early_stopping": {"kind": "asha", "reduction_factor": 10**30}},
     "early_stopping.reduction_factor"),
    ("lr beyond a float", {**GOOD, "space": {"lr": {"low": 10**400, "high": 1}}}, "space.lr.low"),
    ("lr window of zero decades", {**GOOD, "strategy": "bayesian", "options": {"lr_window_decades": 0}},
     "options.lr_window_decades"),
    ("param beyond a float", {**GOOD, "space": {"lr": {"low": 0.01, "high": 1}, "momentum": {"values": [10**400]}}},
     "space.momentum"),
    ("manual lr beyond a float", {"workload": "mlp-digits", "strategy": "manual", "configs": [{"lr": 10**400}]},
     "configs.0.lr"),
    ("manual param beyond a float", {"workload": "mlp-digits", "strategy": "manual",
                                     "configs": [{"lr": 0.1, "momentum": -10**400}]}, "configs.0.momentum"),
    ("range test a few floats wide", {**GOOD, "strategy": "range_test", "max_trials": None,
                                      "space": {"lr": {"low": 0.001, "high": 0.001000000000000001}}}, "space.lr"),
    ("missing workload", {k: v for k, v in GOOD.items() if k != "workload"}, "workload"),
    ("wrong type", {**GOOD, "epochs": "ten"}, "epochs"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_spec_is_rejected_and_writes_nothing(api_only: TestClient, case: tuple) -> None:
    _, spec, field = case
    before = api_only.get("/api/v1/jobs").json()["total"]
    r = api_only.post("/api/v1/jobs", json=spec)
    assert r.status_code == 422, r.text
    body = r.json()
    assert field in body["message"], body
    assert api_only.get("/api/v1/jobs").json()["total"] == before


def test_error_lists_what_is_allowed(api_only: TestClient) -> None:
    r = api_only.post("/api/v1/jobs", json={**GOOD, "space": {"lr": {"low": 0.01, "high": 1}, "optimizer": ["x"]}})
    assert "adam" in r.json()["message"] and "rmsprop" in r.json()["message"]
    r = api_only.post("/api/v1/jobs", json={**GOOD, "workload": "x"})
    assert "mlp-digits" in r.json()["message"]


def test_malformed_and_oversized_bodies(api_only: TestClient) -> None:
    before = api_only.get("/api/v1/jobs").json()["total"]
    r = api_only.post("/api/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = api_only.post("/api/v1/jobs", content=b"x" * (2 * 1024 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = api_only.post("/api/v1/jobs", json=[1, 2, 3])
    assert r.status_code == 422
    assert api_only.get("/api/v1/jobs").json()["total"] == before


def test_a_good_spec_is_accepted(api_only: TestClient) -> None:
    r = api_only.post("/api/v1/jobs", json=GOOD)
    assert r.status_code == 201
    assert r.json()["spec"]["space"] == GOOD["space"]


@pytest.mark.parametrize("spec, total", [
    ({**GOOD, "strategy": "grid", "max_trials": 4, "space": {"lr": {"low": 1e-3, "high": 1, "num": 4}}}, 4),
    ({**GOOD, "strategy": "grid", "max_trials": 50, "space": {"lr": {"low": 1e-3, "high": 1, "num": 4}}}, 4),
    ({"workload": "mlp-digits", "strategy": "manual", "max_trials": 2, "configs": [{"lr": 0.1}, {"lr": 0.01}]}, 2),
], ids=["grid budget equal to its points", "grid budget above its points", "manual budget equal to its configs"])
def test_a_budget_that_covers_the_grid_or_configs_is_accepted(api_only: TestClient, spec: dict, total: int) -> None:
    r = api_only.post("/api/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    assert r.json()["total_trials"] == total


def test_auto_with_one_epoch_runs_without_early_stopping(api_only: TestClient) -> None:
    # ASHA cannot stop a one-epoch trial early, so auto does not add it (and does not reject the job).
    r = api_only.post("/api/v1/jobs", json={**GOOD, "strategy": "auto", "epochs": 1})
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["early_stopping"] is None
    r = api_only.post("/api/v1/jobs", json={**GOOD, "strategy": "auto", "epochs": 2})
    assert r.json()["spec"]["early_stopping"] == {"kind": "asha"}


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize("resources, field, words", [
    ({"cpu": 1, "gpu": 0.5}, "resources.gpu", "0.5 GPU"),
    ({"cpu": 4}, "resources.cpu", "4 CPU"),
    ({"cpu": 3, "gpu": 0.5}, "resources.gpu", "GPU"),
])
def test_a_trial_no_node_can_hold_is_rejected(client: TestClient, resources: dict, field: str, words: str) -> None:
    """The local Ray has 2 CPUs and no GPU: an actor asking for more would wait forever, so the job
    is refused at the door, naming the field, and nothing is written."""
    if "gpu" in field and _has_cuda():
        pytest.skip("this machine has a GPU: the request fits")
    before = client.get("/api/v1/jobs").json()["total"]
    r = client.post("/api/v1/jobs", json={**GOOD, "resources": resources})
    assert r.status_code == 422, r.text
    message = r.json()["message"]
    assert message.startswith(f"{field}:") and words in message and "never start" in message, message
    assert client.get("/api/v1/jobs").json()["total"] == before
    # What fits is taken: the whole of the node is fine.
    ok = client.post("/api/v1/jobs", json={**GOOD, "max_trials": 1, "epochs": 1, "resources": {"cpu": 2}})
    assert ok.status_code == 201, ok.text


def test_a_job_an_earlier_version_accepted_still_resumes() -> None:
    # Earlier versions cut a grid short at max_trials; a stored job like that must still run when the
    # service restarts on this version (the runner re-checks with new_job=False).
    from lrsearch.search import SpecError
    from lrsearch.service.config import Settings
    from lrsearch.service.schemas import JobSpec
    from lrsearch.service.validation import check_job_spec

    spec = JobSpec.model_validate({**GOOD, "strategy": "grid", "max_trials": 3,
                                   "space": {"lr": {"low": 1e-3, "high": 1, "num": 4}}})
    with pytest.raises(SpecError):
        check_job_spec(spec, Settings(), ["mlp-digits"])
    assert check_job_spec(spec, Settings(), ["mlp-digits"], new_job=False).total_trials == 3



@pytest.mark.parametrize("body, field", [
    ('{"workload": "mlp-digits", "name": "a\\ud800b", "space": {"lr": {"low": 0.01, "high": 1}}}', "name"),
    ('{"workload": "mlp-digits", "space": {"lr": {"low": 0.01, "high": 1}, "\\ud800": [1]}}', "space"),
    ('{"workload": "mlp-digits", "strategy": "manual", "configs": [{"lr": 0.1, "\\ud800": 1}]}', "configs.0"),
    ('{"workload": "mlp-digits", "space": {"lr": {"low": 0.01, "high": 1}}, "options": {"\\ud800": 1}}', "options"),
], ids=["name", "space key", "manual key", "options key"])
def test_text_utf8_cannot_encode_is_a_422(api_only: TestClient, body: str, field: str) -> None:
    # JSON may carry a lone surrogate (\ud800); it can be neither stored nor echoed as UTF-8.
    before = api_only.get("/api/v1/jobs").json()["total"]
    r = api_only.post("/api/v1/jobs", content=body.encode("ascii"), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith(field), r.json()
    assert api_only.get("/api/v1/jobs").json()["total"] == before


# -- every mistake at once --------------------------------------------------------------------------

def valid_spec(strategy: str) -> dict[str, Any]:
    """A spec every check accepts, for any registered strategy: built from what the strategy says it
    takes (configs or a space, grid axes or ranges), not from its name."""
    cls = STRATEGIES[strategy]
    spec: dict[str, Any] = {"workload": "mlp-digits", "strategy": strategy, "epochs": 2}
    if cls.default_max_trials is not None:  # a budget; the others run what they plan (a grid, a population)
        spec["max_trials"] = 6
    if cls.takes_configs:
        return {**spec, "configs": [{"lr": 0.1}]}
    return {**spec, "space": {"lr": {"low": 1e-3, "high": 1.0, **({"num": 2} if cls.grid else {})}}}


def rejected(api: TestClient, spec: dict[str, Any]) -> tuple[set[tuple], str]:
    """The locs (without "body") and the message of a 422; asserts nothing was written."""
    before = api.get("/api/v1/jobs").json()["total"]
    r = api.post("/api/v1/jobs", json=spec)
    assert r.status_code == 422, r.text
    body = r.json()
    assert all(set(d) == {"loc", "msg", "type"} and d["loc"][0] == "body" and d["msg"] for d in body["detail"]), body
    assert api.get("/api/v1/jobs").json()["total"] == before
    return {tuple(d["loc"][1:]) for d in body["detail"]}, body["message"]


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_valid_spec_of_every_strategy_is_accepted(api_only: TestClient, strategy: str) -> None:
    r = api_only.post("/api/v1/jobs", json=valid_spec(strategy))
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_mistake_comes_back_in_one_422(api_only: TestClient, strategy: str) -> None:
    # Independent mistakes, in the shape (an unknown early-stopping kind, an option the strategy does
    # not take) and in the values (a cap, the space or what the strategy searches): one answer lists all.
    spec = {**valid_spec(strategy), "max_concurrent": 0, "early_stopping": {"kind": "bohb"}, "options": {"bogus": 1}}
    if STRATEGIES[strategy].takes_configs:
        spec["space"], space_loc = {"lr": {"low": 1e-3, "high": 1.0}}, ("space",)
    else:
        spec["space"]["lr"]["low"], space_loc = -1.0, ("space", "lr", "low")
    locs, message = rejected(api_only, spec)
    expected = {("max_concurrent",), ("early_stopping", "kind"), ("options", "bogus"), space_loc}
    assert locs == expected
    assert all(".".join(map(str, loc)) in message for loc in expected), message
    assert "allowed: ['asha', 'hyperband', 'median']" in message


def test_three_value_mistakes_in_one_422(api_only: TestClient) -> None:
    locs, message = rejected(api_only, {**GOOD, "max_concurrent": 0, "space": {"lr": {"low": -0.1, "high": 1.0}},
                                        "early_stopping": {"kind": "asha", "reduction_factor": 1}})
    assert locs == {("max_concurrent",), ("space", "lr", "low"), ("early_stopping", "reduction_factor")}
    assert "[2, 100]" in message and "> 0" in message


def test_what_depends_on_a_wrong_field_is_not_judged(api_only: TestClient) -> None:
    # Without a known strategy its options (its own model's) and its space cannot be judged: the
    # strategy's mistake is reported, with the mistakes that do not depend on it.
    locs, message = rejected(api_only, {**GOOD, "strategy": "genetic", "options": {"sampler": "x"},
                                        "space": {"lr": {"low": -1, "high": 1}}, "max_concurrent": 0, "code": 1})
    assert locs == {("strategy",), ("max_concurrent",), ("code",)}
    assert "bayesian" in message and "allowed" in message  # the strategies, and the fields there are


# -- the schema -------------------------------------------------------------------------------------

def refs(node: Any) -> list[str]:
    """The names of the component schemas a schema node refers to, depth first."""
    if isinstance(node, dict):
        found = [node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


@pytest.fixture
def schemas(api_only: TestClient) -> dict[str, Any]:
    openapi = api_only.get("/openapi.json").json()
    body = openapi["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert refs(body) == ["JobSpec"]
    return openapi["components"]["schemas"]


def test_the_schema_describes_the_space(schemas: dict[str, Any]) -> None:
    spec = schemas["JobSpec"]["properties"]
    (space_model,) = refs(spec["space"])
    space = schemas[space_model]
    assert set(space["properties"]) == {"lr", "optimizer", "schedule", "warmup_fraction", *param_specs()}
    assert space["additionalProperties"] is False
    (numeric,) = set(refs(space["properties"]["lr"]))
    assert set(schemas[numeric]["properties"]) == {"low", "high", "num", "values"}
    optimizer = space["properties"]["optimizer"]["anyOf"][0]
    assert optimizer["type"] == "array" and optimizer["items"]["enum"] == list(OPTIMIZERS)
    assert all(p["description"] for p in space["properties"].values())
    assert spec["strategy"]["enum"] == list(STRATEGIES)


def test_the_schema_describes_each_early_stopping_kind(schemas: dict[str, Any]) -> None:
    field = schemas["JobSpec"]["properties"]["early_stopping"]
    union = next(s for s in field["anyOf"] if "oneOf" in s)
    assert union["discriminator"]["propertyName"] == "kind"
    assert set(union["discriminator"]["mapping"]) == set(EARLY_STOPPERS)
    for kind, rule in EARLY_STOPPERS.items():
        model = schemas[rule.spec_model.__name__]
        assert model["properties"]["kind"]["const"] == kind
        assert set(model["properties"]) == set(rule.spec_model.model_fields) >= {"kind", "grace_epochs", "grace_steps"}
        assert model["additionalProperties"] is False


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_the_schema_describes_each_strategys_options(schemas: dict[str, Any], strategy: str) -> None:
    options = schemas["JobSpec"]["properties"]["options"]
    model = STRATEGIES[strategy].options_model
    assert model.__name__ in refs(options)
    assert f"{strategy}" in options["description"]
    described = schemas[model.__name__]
    assert set(described.get("properties", {})) == set(model.model_fields)
    assert described["additionalProperties"] is False
    assert all(p["description"] for p in described.get("properties", {}).values())


# -- what is stored ---------------------------------------------------------------------------------

def test_a_spec_reads_back_in_the_shape_it_was_sent(api_only: TestClient) -> None:
    # Single values stand for lists and stay single; what was left out stays out (no nulls added).
    sent = {"workload": "mlp-digits", "strategy": "bayesian", "max_trials": 4, "epochs": 3,
            "space": {"lr": {"low": 1e-4, "high": 1}, "optimizer": "adam", "momentum": 0.9, "nesterov": True,
                      "step_size": {"values": [1, 2]}, "schedule": ["step"]},
            "early_stopping": {"kind": "median", "min_trials": 2}, "options": {"sampler": "gp"}}
    r = api_only.post("/api/v1/jobs", json=sent)
    assert r.status_code == 201, r.text
    stored = r.json()["spec"]
    assert {k: stored[k] for k in ("space", "early_stopping", "options")} == {
        k: sent[k] for k in ("space", "early_stopping", "options")}
    assert stored["configs"] is None and stored["training_seed"] is None


def test_a_spec_stored_by_an_earlier_version_still_loads() -> None:
    # As an earlier version stored it: every field, nulls included, free-form objects then.
    from lrsearch.service.config import Settings
    from lrsearch.service.schemas import JobSpec
    from lrsearch.service.validation import check_job_spec

    stored = {"name": "auto-mlp-digits", "workload": "mlp-digits", "strategy": "auto", "max_trials": 20,
              "max_concurrent": 2, "epochs": 3, "steps": None, "eval_every": None, "batch_size": 64,
              "objective": {"metric": "val_loss", "mode": "min"}, "seed": 0, "training_seed": None,
              "space": {"optimizer": "adam", "lr": {"low": 1e-7, "high": 10.0}}, "configs": None,
              "early_stopping": {"kind": "asha"}, "options": {"num_steps": 20},
              "resources": {"cpu": 1.0, "gpu": 0.0, "workers": 1}, "max_retries": 2, "divergence_factor": 10.0}
    spec = JobSpec.model_validate(stored)
    assert spec.model_dump(mode="json") == stored
    checked = check_job_spec(spec, Settings(), ["mlp-digits"], new_job=False)
    assert checked.spec.model_dump(mode="json") == stored
    assert checked.strategy_spec.options["num_steps"] == 20
