"""API keys with scopes (read < submit < admin), stored hashed, checked on every route under ``--auth``.

A key looks like ``lrs_<id8>_<secret>``: the id part finds the row, the SHA-256 of the whole key
is compared in constant time. Keys are random (256 bits), so a fast hash is the right one here.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from lrsearch.service.models import ApiKey, utcnow

SCOPES = ("read", "submit", "admin")
COOKIE = "lrsearch_key"
# The login page itself, and liveness: a load balancer's probe holds no key, and /livez says
# nothing but that the process answers.
OPEN_PATHS = ("/login", "/logout", "/livez")


def scope_allows(granted: str, needed: str) -> bool:
    return SCOPES.index(granted) >= SCOPES.index(needed)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(lookup id, full key)."""
    key_id = secrets.token_hex(4)
    return key_id, f"lrs_{key_id}_{secrets.token_urlsafe(32)}"


def create_key(session: Session, scope: str, name: str = "") -> tuple[ApiKey, str]:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; allowed: {list(SCOPES)}")
    key_id, key = new_key()
    row = ApiKey(key_id=key_id, key_hash=hash_key(key), scope=scope, name=name[:200])
    session.add(row)
    session.flush()
    return row, key


def revoke_key(session: Session, key_id_or_key: str) -> ApiKey | None:
    key_id = key_id_or_key.split("_")[1] if key_id_or_key.startswith("lrs_") else key_id_or_key
    row = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


@dataclass(frozen=True)
class Principal:
    key_id: str
    scope: str


class KeyVerifier:
    """Verifies presented keys against the store, caching answers briefly (revocation shows within
    ``ttl`` seconds) so a request costs no query."""

    def __init__(self, sessions: sessionmaker[Session], ttl: float = 5.0) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def verify(self, key: str) -> Principal | None:
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = None
        parts = key.split("_")
        if len(parts) >= 3 and parts[0] == "lrs":
            with self.sessions() as s:
                row = s.scalar(select(ApiKey).where(ApiKey.key_id == parts[1]))
            if row is not None and row.revoked_at is None and hmac.compare_digest(row.key_hash, digest):
                principal = Principal(row.key_id, row.scope)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self.ttl, principal)
        return principal


class SubmitRateLimit:
    """A token bucket per key for job submissions: ``per_minute`` sustained, bursts of ``burst``."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str) -> float:
        """0 if allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self.rate if self.rate > 0 else 3600.0


LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lrsearch: sign in</title>
<style>body{{font-family:system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;margin:0;background:#f6f7f9}}
form{{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002;display:grid;gap:.8rem;min-width:22rem}}
input{{padding:.5rem;font:inherit}}button{{padding:.5rem;font:inherit;cursor:pointer}}.err{{color:#b00020}}</style></head>
<body><form method="post" action="/login"><h1>lrsearch</h1><label>API key
<input name="key" type="password" autocomplete="current-password" required autofocus></label>
<input type="hidden" name="next" value="{next}"><p class="err">{error}</p><button type="submit">Sign in</button>
<small>Create a key with <code>lrsearch keys create --scope read</code>.</small></form></body></html>"""


# The sign-in page has one inline style and no script; it may not be framed (no clickjacking of the
# form) and may post only here.
LOGIN_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}


def login_page(next_path: str = "/", error: str = "") -> str:
    return LOGIN_PAGE.format(next=html.escape(next_path, quote=True), error=html.escape(error))


def _needed_scope(method: str, path: str) -> str:
    if path.startswith("/api/v1/keys"):
        return "admin"
    if method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    return "submit"


def _wants_html(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"accept":
            return b"text/html" in value
    return False


def presented_key(scope: Scope) -> str | None:
    cookie_key = None
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
        elif name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE and v:
                    cookie_key = v
    return cookie_key


class AuthMiddleware:
    """401 without a valid key, 403 for a scope too small, 429 past a key's submission rate."""

    def __init__(self, app: ASGIApp, verifier: Any, rate_limit: SubmitRateLimit | None) -> None:
        self.app = app
        self.verifier = verifier  # a callable returning the KeyVerifier (built in the lifespan)
        self.rate_limit = rate_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        key = presented_key(scope)
        principal = self.verifier().verify(key) if key else None
        method, path = scope["method"], scope["path"]
        if principal is None:
            if _wants_html(scope) and method == "GET":
                await _send(send, 401, login_page(path, "a valid key is needed" if key else "").encode(),
                            b"text/html; charset=utf-8",
                            [(k.lower().encode(), v.encode()) for k, v in LOGIN_PAGE_HEADERS.items()])
            else:
                body = b'{"detail": "missing or invalid API key: send Authorization: Bearer KEY"}'
                await _send(send, 401, body, b"application/json", [(b"www-authenticate", b"Bearer")])
            return
        needed = _needed_scope(method, path)
        if not scope_allows(principal.scope, needed):
            body = f'{{"detail": "this key has scope {principal.scope!r}; {needed!r} is needed"}}'.encode()
            await _send(send, 403, body, b"application/json")
            return
        if self.rate_limit is not None and method == "POST" and path == "/api/v1/jobs":
            wait = self.rate_limit.take(principal.key_id)
            if wait > 0:
                body = f'{{"detail": "too many submissions with this key; retry in {wait:.0f} s"}}'.encode()
                await _send(send, 429, body, b"application/json", [(b"retry-after", str(int(wait) + 1).encode())])
                return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def _send(send: Send, status: int, body: bytes, content_type: bytes,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
