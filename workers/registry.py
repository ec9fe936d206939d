"""Workloads by name: the built-ins, the packages of a workload path (``lrsearch serve --workload-path``)
and users' plug-ins from the entry-point group ``lrsearch.workloads``.

A workload path's packages are not installed anywhere: the service scans them (``use_workload_path``)
and records what it found in the environment variable ``LRSEARCH_WORKLOAD_MODULES``
(``{"name": "package:Class"}``), which Ray hands to every worker along with the packages themselves
(its runtime environment's ``py_modules``), so a worker on any node resolves the same names.

Importing this module, listing names and describing the built-ins import no torch: the service
process lists workloads and validates job specs with it, and torch would cost it hundreds of MB.
A workload's module (and so torch) is imported only when ``get_workload`` asks for it, or when
``describe_workloads`` has to read a plug-in's description.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import logging
import os
import sys
import threading
import warnings
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from lrsearch.workers.errors import readable_error

if TYPE_CHECKING:
    from lrsearch.workers.workloads.base import Dataset, Workload

ENTRY_POINT_GROUP = "lrsearch.workloads"
WORKLOAD_MODULES_ENV = "LRSEARCH_WORKLOAD_MODULES"

log = logging.getLogger(__name__)


class _BuiltIn(NamedTuple):
    target: str  # "module:attr", imported on first use
    description: str  # kept here so describing needs no import; equals the class's (tested)
    batch_size: int  # likewise (the job's batch size, for transferring a learning rate)
    metrics: tuple[tuple[str, str], ...] = (("val_loss", "min"), ("val_accuracy", "max"))  # likewise


_LOSS_ONLY = (("val_loss", "min"),)


BUILTIN_WORKLOADS: dict[str, _BuiltIn] = {
    "mlp-digits": _BuiltIn(
        "lrsearch.workers.workloads.digits:MLPDigits",
        "MLP 64-64-10 (ReLU) on scikit-learn's 8x8 digits, standardized pixels, 80/20 split.",
        64,
    ),
    "cnn-digits": _BuiltIn(
        "lrsearch.workers.workloads.digits:CNNDigits",
        "Small CNN (3x3 conv 16, 3x3 conv 32, linear; ReLU) on scikit-learn's 8x8 digits, 80/20 split.",
        64,
    ),
    "logreg-breast-cancer": _BuiltIn(
        "lrsearch.workers.workloads.tabular:LogRegBreastCancer",
        "Logistic regression (one linear layer, 2-class softmax) on scikit-learn's breast cancer "
        "table: 569 samples, 30 standardized features, 80/20 split.",
        32,
    ),
    "mlp-wine": _BuiltIn(
        "lrsearch.workers.workloads.tabular:MLPWine",
        "MLP 13-32-3 (ReLU) on scikit-learn's wine table: 178 samples, 13 standardized features, 80/20 split.",
        16,
    ),
    "synthetic": _BuiltIn(
        "lrsearch.workers.workloads.synthetic:Synthetic",
        "Generated regression (y = linear + tanh term + noise, 8 features), MLP 8-16-1, "
        "256 training / 64 validation samples: milliseconds per epoch, for scale tests.",
        64,
        _LOSS_ONLY,
    ),
    "gpt-stdlib": _BuiltIn(
        "lrsearch.workers.workloads.gpt_stdlib:GPTStdlib",
        "Byte-level decoder-only transformer (2 layers, width 64, 4 heads, context 64) on the "
        "Python standard library's own source text, streamed from disk; reports val_loss "
        "(nats/byte) and val_bpb (bits/byte). For step jobs.",
        32,
        (("val_loss", "min"), ("val_bpb", "min")),
    ),
}

_lock = threading.Lock()
_instances: dict[str, Workload] = {}
_warned: set[str] = set()  # plug-ins whose load error was logged


def workload_names() -> list[str]:
    """Every workload a job may name: built-ins first, then the workload path's, then plug-ins,
    each group sorted (a name is listed once: the earlier group wins)."""
    path = sorted(n for n in _path_workloads() if n not in BUILTIN_WORKLOADS)
    plugins = sorted(n for n in _plugin_entry_points() if n not in path)
    return list(BUILTIN_WORKLOADS) + path + plugins


def describe_workloads() -> list[dict[str, Any]]:
    """``[{"name", "description", "metrics", "error"}, ...]`` in ``workload_names()`` order.

    A plug-in that fails to load is still listed, so its owner sees why: ``error`` is the load error
    as plain text (``"AttributeError: ..."``), None for a workload that loads. Jobs naming it are refused.
    """
    out: list[dict[str, Any]] = [{"name": name, "description": b.description, "metrics": dict(b.metrics),
                                  "error": None} for name, b in BUILTIN_WORKLOADS.items()]
    for name in workload_names()[len(BUILTIN_WORKLOADS):]:
        description, metrics, error = "", {}, None
        try:
            workload = get_workload(name)
            description = str(getattr(workload, "description", "") or "")
            metrics = dict(workload.reported_metrics())
        except Exception as exc:  # a broken plug-in must not take the listing down
            error = readable_error(exc)
            if name not in _warned:  # logged once, not on every listing
                _warned.add(name)
                log.warning("workload plug-in %r failed to load: %s", name, error)
        out.append({"name": name, "description": description, "metrics": metrics, "error": error})
    return out


def workload_batch_size(name: str) -> int:
    """The training batch size of a workload (no import for the built-ins)."""
    if name in BUILTIN_WORKLOADS:
        return BUILTIN_WORKLOADS[name].batch_size
    return int(get_workload(name).batch_size)


def workload_metrics(name: str) -> dict[str, str]:
    """The validation metrics a workload reports, each with its better direction ("min" or "max").
    No import for the built-ins."""
    if name in BUILTIN_WORKLOADS:
        return dict(BUILTIN_WORKLOADS[name].metrics)
    return dict(get_workload(name).reported_metrics())


def get_workload(name: str) -> Workload:
    """The workload called ``name``, one cached instance per process. Unknown name: KeyError
    listing the known ones."""
    with _lock:
        if name not in _instances:
            _instances[name] = _load(name)
        return _instances[name]


@functools.lru_cache(maxsize=8)
def get_dataset(name: str, seed: int) -> Dataset:
    """``get_workload(name).load_data(seed)``, cached per process for trials of the same job.

    Shared between trials: treat the tensors as read-only (the trainer does)."""
    return get_workload(name).load_data(seed)


def clear_cache() -> None:
    """Forget loaded workloads, datasets and the plug-in scan (after installing a plug-in; tests)."""
    with _lock:
        _instances.clear()
    _warned.clear()
    get_dataset.cache_clear()
    _plugin_entry_points.cache_clear()
    _path_workloads.cache_clear()


def _load(name: str) -> Workload:
    from lrsearch.workers.workloads.base import Workload  # torch from here on

    path = _path_workloads()
    if name in BUILTIN_WORKLOADS or name in path:
        target = BUILTIN_WORKLOADS[name].target if name in BUILTIN_WORKLOADS else path[name]
        module_name, _, attr = target.partition(":")
        obj = getattr(importlib.import_module(module_name), attr)
    else:
        plugins = _plugin_entry_points()
        if name not in plugins:
            raise KeyError(f"unknown workload {name!r}; known workloads: {', '.join(workload_names())}")
        obj = plugins[name].load()
    # A Workload subclass or a zero-argument factory: calling either gives the instance.
    workload = obj()
    if not isinstance(workload, Workload):
        raise TypeError(f"workload {name!r} ({obj!r}) gave {type(workload).__name__}, not a Workload")
    if not workload.streams and type(workload).load_data is Workload.load_data:
        raise TypeError(f"workload {name!r} ({obj!r}) has neither load_data nor train_batches: "
                        "it needs one of them to train on")
    return workload


def use_workload_path(path: str | os.PathLike[str]) -> list[str]:
    """Make the workloads of the packages in ``path`` known to this process and to every process it
    starts (Ray's workers among them, through ``WORKLOAD_MODULES_ENV``); returns the packages'
    directories, for Ray's ``py_modules``. Raises ValueError for a path that is not a directory."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise ValueError(f"workload path {str(path)!r} is not a directory")
    found, packages = scan_workload_path(root)
    os.environ[WORKLOAD_MODULES_ENV] = json.dumps(found)
    clear_cache()
    return [str(p) for p in packages]


def scan_workload_path(root: Path) -> tuple[dict[str, str], list[Path]]:
    """``({name: "package:Class"}, package directories)``: every concrete Workload subclass with a
    name that a package directly in ``root`` defines at its top level (a folder with an
    ``__init__.py``). ``root`` goes on ``sys.path``, so they import in this process as they will on
    the workers. A package that fails to import is logged and left out; a name taken twice keeps
    the first (packages in name order)."""
    from lrsearch.workers.workloads.base import Workload

    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    found: dict[str, str] = {}
    packages = sorted(p for p in root.iterdir() if (p / "__init__.py").is_file() and p.name.isidentifier())
    for package in packages:
        try:
            module = importlib.import_module(package.name)
        except Exception as exc:  # a broken package must not take the others down
            log.warning("workload package %s failed to import: %r", package, exc)
            continue
        for attr, obj in sorted(vars(module).items()):
            if (isinstance(obj, type) and issubclass(obj, Workload) and not inspect.isabstract(obj)
                    and isinstance(getattr(obj, "name", None), str)
                    and obj.__module__.split(".")[0] == package.name):
                if obj.name in found or obj.name in BUILTIN_WORKLOADS:
                    warnings.warn(f"workload {obj.name!r} of {package} is ignored: the name is taken", stacklevel=2)
                    continue
                found[obj.name] = f"{package.name}:{attr}"
    return found, packages


@functools.lru_cache(maxsize=1)
def _path_workloads() -> dict[str, str]:
    """The workload path's workloads, as ``use_workload_path`` recorded them for this process."""
    raw = os.environ.get(WORKLOAD_MODULES_ENV)
    return dict(json.loads(raw)) if raw else {}


@functools.lru_cache(maxsize=1)
def _plugin_entry_points() -> dict[str, EntryPoint]:
    """Plug-ins by name, without importing them. Built-in names win; a different target under a
    built-in's name, or two plug-ins with one name, is warned about and the later one ignored."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_WORKLOADS:
            # Built-ins may also be registered in the group (pyproject.toml); that is no conflict.
            if _same_target(ep.value, BUILTIN_WORKLOADS[ep.name].target):
                continue
            warnings.warn(
                f"workload plug-in {ep.name!r} ({ep.value}) is shadowed by the built-in of that name",
                stacklevel=2,
            )
        elif ep.name in found:
            if not _same_target(ep.value, found[ep.name].value):
                warnings.warn(
                    f"two workload plug-ins are named {ep.name!r}: using {found[ep.name].value}, "
                    f"ignoring {ep.value}",
                    stacklevel=2,
                )
        else:
            found[ep.name] = ep
    return found


def _same_target(a: str, b: str) -> bool:
    return a.replace(" ", "") == b.replace(" ", "")
