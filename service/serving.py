"""How ``lrsearch serve`` runs the app: its port taken before anything starts, and a quiet access log."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any


class PortInUse(Exception):
    """The address to serve on cannot be bound; the message says what to do."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, taken before the app starts Ray or opens the store, so a busy
    port fails at once and leaves nothing running. Raises PortInUse."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on connections of a socket
    # that says it is TCP; with it on, every answer waited some 40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts do not wait out TIME_WAIT
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # and inherited by accepted connections
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {port} on {host} is in use (another `lrsearch serve`?); stop it, or pick "
                            f"another port: --port {port + 1} (make run PORT={port + 1})") from None
        raise PortInUse(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class QuietAccessLog(logging.Filter):
    """Drops the access-log lines of successful reads: the dashboard polls every second and each
    poll would be a line. Writes, and every answer of 400 or over, are still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args: Any = record.args
        if isinstance(args, tuple) and len(args) == 5:  # uvicorn's (client, method, path, version, status)
            method, status = args[1], args[4]
            return not (method in ("GET", "HEAD") and isinstance(status, int) and status < 400)
        return True


def serve(app: Any, sock: socket.socket, log_level: str, access_log: bool) -> None:
    """Run ``app`` under uvicorn on ``sock`` (from ``bind``), and close it after."""
    import uvicorn

    if not access_log:
        logging.getLogger("uvicorn.access").addFilter(QuietAccessLog())
    host, port = sock.getsockname()[:2]
    # uvicorn announces its address only for sockets it binds itself: say where to go.
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    logging.getLogger("lrsearch.service").info("dashboard at %s/, API docs at %s/docs (Ctrl+C to stop)", url, url)
    try:
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level)).run(sockets=[sock])
    finally:
        sock.close()
