"""The installed package: one import name (``lrsearch``) and the layering between its parts.

The source folders sit at the top of the repository, where a process started there could import
them as top-level ``service``/``workers``/``search``; these tests build the real wheel and run it
from outside the repository, as a user's environment has it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

# What the build reads: built from a copy, so the build's own folders never land in the repository.
SOURCES = ("pyproject.toml", "README.md", "lrsearch", "service", "workers", "search", "migrations")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(out), str(src)], check=True, timeout=300, capture_output=True, text=True)
    (out / "build.log").write_text(build.stdout + build.stderr)
    (built,) = out.glob("lrsearch-*.whl")
    return built


def test_the_build_warns_of_nothing(wheel: Path) -> None:
    """Installing prints no setuptools banners (a deprecated licence field, data folders that are
    no packages): a user sees them on every install."""
    log = (wheel.parent / "build.log").read_text()
    for banner in ("SetuptoolsDeprecationWarning", "BuildBackendWarning", "absent from the `packages`", "!!"):
        assert banner not in log, log


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment outside the repository with the wheel installed; its
    dependencies are this environment's (a path entry, not a site directory, so the repository's
    editable install does not come along)."""
    root = tmp_path_factory.mktemp("env")
    venv.create(root / "venv", with_pip=False)
    python = root / "venv" / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, timeout=300, capture_output=True)
    return python


def run_outside(python: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_wheel_installs_only_the_lrsearch_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"lrsearch", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops
    for data in ("lrsearch/migrations/alembic.ini", "lrsearch/migrations/versions/0001_initial.py",
                 "lrsearch/service/static/job.js", "lrsearch/service/templates/job.html"):
        assert data in names


def test_users_import_lrsearch_and_nothing_else(installed: Path, tmp_path: Path) -> None:
    ok = run_outside(installed, "from lrsearch import Client; from lrsearch.workloads import Workload; "
                                "import lrsearch.service.app; print(Client.__module__, Workload.__name__)", tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["lrsearch.service.client", "Workload"]
    for name in ("service", "workers", "search", "migrations"):
        gone = run_outside(installed, f"import {name}", tmp_path)
        assert "ModuleNotFoundError" in gone.stderr, (name, gone.stderr)


def test_the_cli_runs_from_the_installed_package(installed: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    out = subprocess.run([str(installed), "-m", "lrsearch", "db", "upgrade", "--db", db], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_workers_never_import_the_service_and_search_imports_neither_torch_nor_ray(installed: Path,
                                                                                  tmp_path: Path) -> None:
    code = ("import sys\n"
            "import lrsearch.workers.trainer, lrsearch.workers.ray_executor, lrsearch.workers.in_process_executor\n"
            "import lrsearch.workers.registry, lrsearch.workers.workloads.gpt_stdlib\n"
            "bad = sorted(m for m in sys.modules if m.startswith('lrsearch.service'))\n"
            "assert not bad, bad\n"
            "before = set(sys.modules)\n")
    out = run_outside(installed, code, tmp_path)
    assert out.returncode == 0, out.stderr
    code = ("import sys\n"
            "import lrsearch.search, lrsearch.search.decisions, lrsearch.search.early_stopping\n"
            "import lrsearch.search.analysis, lrsearch.search.range_test, lrsearch.search.catalog\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray', 'sqlalchemy', 'fastapi'))\n"
            "assert not bad, bad\n")
    out = run_outside(installed, code, tmp_path)
    assert out.returncode == 0, out.stderr
