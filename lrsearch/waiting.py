"""Waiting for something the process needs and may start before (a database, a Ray head)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

SAY_EVERY_SECONDS = 5.0  # how often a wait says that it is still waiting, and why


def wait_until(probe: Callable[[], str | None], wait_seconds: float, what: str,
               give_up: Callable[[str], Exception], log: logging.Logger,
               say_every: float = SAY_EVERY_SECONDS, poll_seconds: float = 0.5) -> None:
    """Call ``probe`` until it returns None (ready); it returns why not otherwise. Logs
    ``waiting for {what} ({why})`` every ``say_every`` seconds, and raises ``give_up(why)`` once
    ``wait_seconds`` have passed."""
    start = time.monotonic()
    say_at = start
    while True:
        reason = probe()
        if reason is None:
            return
        now = time.monotonic()
        if now - start >= wait_seconds:
            raise give_up(reason)
        if now >= say_at:
            log.info("waiting for %s (%s)", what, reason)
            say_at = now + say_every
        time.sleep(poll_seconds)
