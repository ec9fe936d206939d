from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from lrsearch.workers import registry
from lrsearch.workers.workloads.base import Workload

BUILTINS = ["mlp-digits", "cnn-digits", "logreg-breast-cancer", "mlp-wine", "synthetic", "gpt-stdlib"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_builtins_are_listed_and_described() -> None:
    assert registry.workload_names()[: len(BUILTINS)] == BUILTINS
    described = registry.describe_workloads()
    assert [d["name"] for d in described] == registry.workload_names()
    assert all(set(d) == {"name", "description", "metrics", "error"} and d["description"] and d["error"] is None
               for d in described)
    assert all(d["metrics"]["val_loss"] == "min" for d in described)


@pytest.mark.parametrize("name", BUILTINS)
def test_static_descriptions_match_the_classes(name: str) -> None:
    workload = registry.get_workload(name)
    assert isinstance(workload, Workload)
    assert workload.name == name
    assert registry.BUILTIN_WORKLOADS[name].description == workload.description
    assert registry.workload_batch_size(name) == workload.batch_size


def test_workloads_and_datasets_are_cached() -> None:
    assert registry.get_workload("mlp-wine") is registry.get_workload("mlp-wine")
    assert registry.get_dataset("mlp-wine", 0) is registry.get_dataset("mlp-wine", 0)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError) as excinfo:
        registry.get_workload("resnet-imagenet")
    message = str(excinfo.value)
    assert "'resnet-imagenet'" in message
    for name in BUILTINS:
        assert name in message


def test_listing_imports_no_torch() -> None:
    """The service lists workloads without torch; it costs hundreds of MB per process."""
    code = textwrap.dedent(
        """
        import sys
        import lrsearch.workers.registry as r
        assert r.workload_names() and r.describe_workloads()
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)


# --- plug-ins through the entry-point group ------------------------------------------------------

PLUGIN_MODULE = '''
from torch import nn
from lrsearch.workers.workloads.base import Dataset, Workload
import torch


class TinyWorkload(Workload):
    name = "tiny-plugin"
    description = "a plug-in workload"
    task = "regression"
    batch_size = 4

    def load_data(self, seed):
        x = torch.randn(16, 2, generator=torch.Generator().manual_seed(seed))
        return Dataset(x[:12], x[:12].sum(1, keepdim=True), x[12:], x[12:].sum(1, keepdim=True))

    def build_model(self, seed):
        return nn.Linear(2, 1)

    def loss_fn(self):
        return nn.MSELoss()


def make_tiny():
    workload = TinyWorkload()
    workload.description = "made by a factory"
    return workload


def make_nothing():
    return object()
'''


def _distribution(root: Path, name: str, entry_points: str) -> None:
    dist_info = root / f"{name}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{entry_points}")


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Two installed distributions with workload entry points, found on sys.path."""
    (tmp_path / "lrsearch_test_plugin.py").write_text(PLUGIN_MODULE)
    _distribution(
        tmp_path,
        "lrsearch_test_plugin",
        "tiny-plugin = lrsearch_test_plugin:TinyWorkload\n"
        "tiny-factory = lrsearch_test_plugin:make_tiny\n"
        "not-a-workload = lrsearch_test_plugin:make_nothing\n"
        "broken = lrsearch_test_plugin:does_not_exist\n"
        "mlp-digits = lrsearch_test_plugin:TinyWorkload\n",  # shadowed by the built-in
    )
    # Registering a built-in under its own target (as pyproject.toml may) is no conflict.
    _distribution(tmp_path, "lrsearch_test_builtins", "cnn-digits = lrsearch.workers.workloads.digits:CNNDigits\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.clear_cache()
    yield
    monkeypatch.delitem(sys.modules, "lrsearch_test_plugin", raising=False)
    registry.clear_cache()


def test_plugins_are_listed_after_the_builtins(plugins) -> None:
    with pytest.warns(UserWarning, match="'mlp-digits'.*shadowed by the built-in") as record:
        names = registry.workload_names()
    assert len(record) == 1  # the cnn-digits registration is the built-in itself
    assert names == [*BUILTINS, "broken", "not-a-workload", "tiny-factory", "tiny-plugin"]


def test_builtin_wins_a_name_conflict(plugins) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert registry.get_workload("mlp-digits").description != "a plug-in workload"


def test_plugin_class_and_factory_load(plugins, run_trial) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny = registry.get_workload("tiny-plugin")
        assert tiny.description == "a plug-in workload"
        assert registry.get_workload("tiny-factory").description == "made by a factory"
        results = run_trial("tiny-plugin", {"lr": 0.01, "optimizer": "adam", "schedule": "constant"}, epochs=2)
    assert len(results) == 2 and results[-1].val_accuracy is None


def test_broken_plugins_are_described_not_fatal(plugins) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        described = {d["name"]: d for d in registry.describe_workloads()}
        assert described["tiny-factory"]["description"] == "made by a factory"
        assert described["tiny-factory"]["error"] is None
        # The load error, as one line of plain text, in its own field.
        assert described["broken"]["error"].startswith("AttributeError: ")
        assert "does_not_exist" in described["broken"]["error"]
        assert described["not-a-workload"]["error"].startswith("TypeError: ") and "not a Workload" in \
            described["not-a-workload"]["error"]
        with pytest.raises(AttributeError):
            registry.get_workload("broken")
        with pytest.raises(TypeError, match="not a Workload"):
            registry.get_workload("not-a-workload")
        with pytest.raises(KeyError, match="tiny-plugin"):
            registry.get_workload("nope")


def test_a_job_naming_a_broken_plugin_is_refused_with_its_load_error(plugins, tmp_path: Path) -> None:
    """The API lists the load error and refuses the job (422 naming workload), writing nothing."""
    from fastapi.testclient import TestClient

    from lrsearch.service.app import create_app
    from lrsearch.service.config import Settings

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}", run_jobs=False)
    with warnings.catch_warnings(), TestClient(create_app(settings)) as client:
        warnings.simplefilter("ignore")
        listed = {w["name"]: w for w in client.get("/api/v1/workloads").json()["items"]}
        assert listed["broken"]["error"].startswith("AttributeError: ")
        assert listed["tiny-plugin"]["error"] is None and listed["mlp-digits"]["error"] is None
        r = client.post("/api/v1/jobs", json={"workload": "broken", "space": {"lr": {"low": 1e-3, "high": 1.0}}})
        assert r.status_code == 422, r.text
        [error] = [e for e in r.json()["detail"] if e["loc"] == ["body", "workload"]]
        assert "failed to load: AttributeError: " in error["msg"] and "does_not_exist" in error["msg"]
        assert client.get("/api/v1/jobs").json()["total"] == 0
