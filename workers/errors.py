"""A failed trial's reason as a person reads it: the workload's own error, its first line, no colour codes."""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def readable_error(exc: BaseException) -> str:
    """``"ValueError: expected target dtype to be Long"`` for an error raised in a workload, also when
    it reaches the service wrapped by Ray (whose text repeats the remote traceback in colour)."""
    cause = getattr(exc, "cause", None)  # Ray's RayTaskError keeps the remote exception here
    if isinstance(cause, BaseException):
        exc = cause
    text = _ANSI.sub("", str(exc))
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    name = type(exc).__name__
    name = name[name.index("(") + 1:-1] if name.startswith("RayTaskError(") else name
    return f"{name}: {first}" if first else name
