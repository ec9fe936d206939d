"""The README as a newcomer reads it: short, its links whole, and its examples working as written.

The CLI and curl commands of the README's ```sh / ```bash blocks run in order, each through bash
from the repository root, against a real ``lrsearch serve`` on a fresh store (so the README's job ids
are the ids its own earlier examples create). ``lrsearch`` commands reach the service through
``LRSEARCH_URL``; curl commands get the service's URL in place of the README's
``http://127.0.0.1:8000``, the one change made to any command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, ServiceProcess

README = REPO / "README.md"
README_URL = "http://127.0.0.1:8000"  # where the README's examples expect the service
MAX_README_BYTES = 15_000

FENCED_SHELL = re.compile(r"^```(?:sh|bash)[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
FENCED_ANY = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
# [text](target) and ![alt](target); the target up to a space (a title may follow) or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def shell_commands(markdown: str) -> list[str]:
    """Every complete command of the shell blocks: backslash-continued lines joined, and a command
    whose quotes are still open (a JSON body over several lines) read on until they close."""
    commands = []
    for block in FENCED_SHELL.findall(markdown):
        pending = ""
        for line in block.splitlines():
            pending = f"{pending}\n{line}" if pending else line
            if pending.endswith("\\"):
                continue
            try:
                shlex.split(pending, comments=True)
            except ValueError:  # a quotation not closed yet
                continue
            if pending.strip() and not pending.lstrip().startswith("#"):
                commands.append(pending.strip())
            pending = ""
        assert not pending, f"a command in README.md never ends: {pending!r}"
    return commands


def is_example(command: str) -> bool:
    """The commands this test runs: the CLI's client commands and curl. Not `lrsearch serve` (the
    test starts the service itself), nor `make` or `pip` (the environment is the test's own)."""
    words = command.split()
    if words[0] == "curl":
        return True
    return Path(words[0]).name == "lrsearch" and words[1:2] != ["serve"]


def relative_links(markdown: str) -> list[str]:
    """Link and image targets that are files of the repository (no URL, no bare #anchor)."""
    targets = LINK.findall(FENCED_ANY.sub("", markdown))
    return [t.split("#", 1)[0] for t in targets
            if not re.match(r"[a-z][a-z0-9+.-]*:", t, re.IGNORECASE) and not t.startswith("#")]


def test_readme_is_short() -> None:
    size = README.stat().st_size
    assert size < MAX_README_BYTES, f"README.md is {size} bytes; move detail into docs/ (at most {MAX_README_BYTES})"


@pytest.mark.parametrize("page", [README, *sorted((REPO / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_exist(page: Path) -> None:
    targets = relative_links(page.read_text())
    if page == README:
        assert targets, "no relative links found in README.md: is the link pattern still right?"
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to files that do not exist: {missing}"


def test_readme_examples_run_as_written(tmp_path: Path) -> None:
    examples = [c for c in shell_commands(README.read_text()) if is_example(c)]
    assert any(re.search(r"\bsubmit\b.*--wait", c) for c in examples), examples
    assert any(c.startswith("curl") for c in examples), examples

    service = ServiceProcess(f"sqlite:///{tmp_path / 'lrsearch.db'}", log_path=tmp_path / "serve.log",
                             env={"LRSEARCH_DATA_DIR": str(tmp_path / "data")})
    env = {**os.environ, "LRSEARCH_URL": service.url,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("LRSEARCH_TOKEN", None)
    timings = []
    try:
        service.start()
        for example in examples:
            command = example.replace(README_URL, service.url) if example.startswith("curl") else example
            started = time.monotonic()
            out = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True,
                                 timeout=180)
            timings.append((round(time.monotonic() - started, 1), example.splitlines()[0]))
            said = f"README example {example!r}\nexit {out.returncode}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
            assert out.returncode == 0, said
            if example.startswith("curl"):
                assert out.stdout.strip(), said
                try:
                    answer = json.loads(out.stdout)
                except ValueError:
                    answer = None  # not JSON (a CSV export): its exit status is the check
                # curl -s exits 0 on a 404 or 422 too: their bodies are FastAPI's {"detail": ...}.
                assert not (isinstance(answer, dict) and "detail" in answer), said
            if re.search(r"\bsubmit\b.*--wait", example):
                assert re.search(r"^job \d+ completed$", out.stdout, re.MULTILINE), said
    finally:
        service.stop()
    print("README examples, seconds each:", *timings, sep="\n  ")


def test_the_spec_table_does_not_sell_a_default_that_is_not_one() -> None:
    """Early stopping is off unless asked for, except for `auto`: the row must not read as 'ASHA by default'."""
    row = next(line for line in README.read_text().splitlines() if line.startswith("| `early_stopping`"))
    assert "default none" in row and "except `auto`" in row, row
