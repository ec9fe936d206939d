"""Errors search/ raises for a bad job spec; the service turns them into 422s."""

from __future__ import annotations


class SpecError(ValueError):
    """A spec problem at ``loc`` (a path into the JobSpec, e.g. ("space", "lr", "low"))."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {message}")
        self.loc = loc
        self.message = message
