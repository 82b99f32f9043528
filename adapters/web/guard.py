"""The dashboard's gate: the token on every request (when one is set), and headers that keep pages inert.

A request passes with `Authorization: Bearer <token>`, or the cookie a `?token=<token>` link sets (HttpOnly,
SameSite=Strict, holding a hash of the token, not the token); such a link is answered with a redirect to the
same address without the token, so it stays out of history and of the server's logs.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from itertrack.adapters.documents.envelope import dumps

COOKIE = "itertrack_session"
# No inline script runs (data rides in <script type="application/json">); Vega compiles its expressions
# with the Function constructor, hence 'unsafe-eval'. Nothing is loaded from elsewhere.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def cookie_value(token: str) -> str:
    """What the session cookie holds for `token`: a hash, so the cookie never carries the token itself."""
    return hashlib.sha256(b"itertrack-serve:" + token.encode()).hexdigest()


def host_of(header: str) -> str:
    """The host name of a `Host` header, without its port (`[::1]:8765` -> `::1`), lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: refuses (401) a request without the token when `token` is set; with `hosts`, refuses
    (400) a request whose `Host` names another host (a page elsewhere that rebinds its DNS name to 127.0.0.1
    cannot read a dashboard bound there); adds the security headers to every response."""

    def __init__(self, app: ASGIApp, token: str | None, hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.token = token
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if self.hosts is not None:
            given_host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
            if host_of(given_host) not in self.hosts:
                await _refuse(send_with_headers, 400, _error(400, "this dashboard answers only to its own address"))
                return
        if self.token is None or self._has_token(scope):
            await self.app(scope, receive, send_with_headers)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given and hmac.compare_digest(given[-1].encode(), self.token.encode()):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            path = "/" + str(scope["path"]).lstrip("/")  # never `//host`: a redirect stays on this server
            location = path + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={cookie_value(self.token)}; HttpOnly; SameSite=Strict; Path=/"
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [(b"location", location.encode("latin-1", "replace")), (b"set-cookie", cookie.encode())],
                }
            )
            await send_with_headers({"type": "http.response.body", "body": b""})
            return
        body = _error(
            401, "a token is required: Authorization: Bearer <token>, or open the page once with ?token=<token>"
        )
        await send_with_headers(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send_with_headers({"type": "http.response.body", "body": body})

    def _has_token(self, scope: Scope) -> bool:
        assert self.token is not None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
                    return True
            elif name == b"cookie":
                jar: SimpleCookie = SimpleCookie()
                try:
                    jar.load(value.decode("latin-1"))
                except Exception:  # noqa: S112  # a malformed cookie header is no token
                    continue
                morsel = jar.get(COOKIE)
                if morsel is not None and hmac.compare_digest(morsel.value.encode(), cookie_value(self.token).encode()):
                    return True
        return False


def _error(status: int, message: str) -> bytes:
    """The `itertrack.error` document's JSON."""
    return dumps("error", {"status": status, "error": message}).encode()


async def _refuse(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    listed = [(b"content-type", b"application/json"), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": listed})
    await send({"type": "http.response.body", "body": body})
