"""Who may call what (CONTRACT §8).

- State-changing endpoints need `Authorization: Bearer <TORGHUT_API_TOKEN>`: 401 without it or
  with another token; 403 when no token is configured (they are off until one is).
- Reads (the JSON endpoints, the page, the report) need the same token, unless
  `TORGHUT_API_PUBLIC_READS=true`. A browser cannot add a header to a page load, so the page's
  sign-in exchanges the bearer token for a cookie that is good for reads only: it holds an
  HMAC of the token, never the token, so it cannot be replayed as a bearer token for a halt.
- `/healthz`, `/readyz` and `/metrics` take no dependency here: always open.

Comparisons are constant-time (`hmac.compare_digest`), so response timing reveals nothing of
the token."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fastapi import HTTPException, Request

READ_COOKIE = "torghut_read"
ENABLE_WRITES = (
    "state-changing endpoints are disabled: set TORGHUT_API_TOKEN (a secret of at least 16 "
    "characters) and send it as `Authorization: Bearer <token>`"
)
ENABLE_READS = (
    "reads need a token: set TORGHUT_API_TOKEN and send it as `Authorization: Bearer <token>`, "
    "or set TORGHUT_API_PUBLIC_READS=true"
)


class AuthError(HTTPException):
    """401 or 403 with a message; the API's handler turns it into `{"error": ...}`."""

    def __init__(self, status_code: int, message: str) -> None:
        headers = {"WWW-Authenticate": 'Bearer realm="torghut"'} if status_code == 401 else None
        super().__init__(status_code=status_code, detail=message, headers=headers)


@dataclass(frozen=True)
class ApiAuth:
    token: str | None
    public_reads: bool

    def bearer_ok(self, request: Request) -> bool:
        if self.token is None:
            return False
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), self.token.encode())

    def read_cookie_value(self) -> str:
        """What the sign-in cookie holds: derived from the token, useless as a bearer."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"torghut-page-reads", hashlib.sha256).hexdigest()

    def cookie_ok(self, request: Request) -> bool:
        if self.token is None:
            return False
        presented = request.cookies.get(READ_COOKIE, "")
        return hmac.compare_digest(presented.encode(), self.read_cookie_value().encode())

    def require_write(self, request: Request) -> None:
        if self.token is None:
            raise AuthError(403, ENABLE_WRITES)
        if not self.bearer_ok(request):
            raise AuthError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")

    def read_allowed(self, request: Request) -> bool:
        return self.public_reads or self.bearer_ok(request) or self.cookie_ok(request)

    def require_read(self, request: Request) -> None:
        if self.read_allowed(request):
            return
        if self.token is None:
            raise AuthError(403, ENABLE_READS)
        raise AuthError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
