"""The error family of Torghut, in one place.

| type | raised when | the caller must |
|---|---|---|
| `ConfigError` | a setting is bad or contradicts another | stop: exit 2, one line naming it |
| `InputError` | a file, body or argument is malformed | stop: exit 2, one line naming it |
| `ReviewError` | an LLM review failed (codes below) | record an `error` outcome |
| `BrokerError` | the broker refused or was unreachable | mark the decision, go on |

`ReviewError.code` is one of CONTRACT §4:

| code | retryable before the first event | counts for the breaker |
|---|---|---|
| `connect_error` | yes | yes |
| `http_error` | only 408, 429 and 5xx | yes |
| `gateway_error` | no | yes |
| `stream_incomplete` | no | yes |
| `timeout` | no | yes |
| `response_too_large` | no | yes |
| `protocol_error` | no | yes |
| `invalid_json` | no | yes |
| `invalid_schema` | no | yes |
| `circuit_open` | no | no (no request was sent) |
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

# Longest piece of a gateway's own error text quoted in a message (CONTRACT §2).
QUOTE_LIMIT = 300
REDACTED = "***"


class TorghutError(Exception):
    """Base of every error Torghut raises on purpose."""


class ConfigError(TorghutError):
    """A bad setting. `variable` is the environment variable to blame."""

    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {message}")


class InputError(TorghutError):
    """Bad input: a file, a request body, a command-line argument."""


class BrokerError(TorghutError):
    """The broker refused an order or could not be reached."""

    def __init__(self, message: str, *, rejected: bool = False) -> None:
        self.rejected = rejected
        super().__init__(message)


class ReviewErrorCode(StrEnum):
    CONNECT_ERROR = "connect_error"
    HTTP_ERROR = "http_error"
    GATEWAY_ERROR = "gateway_error"
    STREAM_INCOMPLETE = "stream_incomplete"
    TIMEOUT = "timeout"
    RESPONSE_TOO_LARGE = "response_too_large"
    PROTOCOL_ERROR = "protocol_error"
    INVALID_JSON = "invalid_json"
    INVALID_SCHEMA = "invalid_schema"
    CIRCUIT_OPEN = "circuit_open"


class ReviewError(TorghutError):
    """A review that failed. The message is already redacted and safe to store."""

    def __init__(
        self,
        code: ReviewErrorCode,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
    ) -> None:
        self.code = code
        self.message = message
        self.status = status
        self.retryable = retryable
        super().__init__(f"{code.value}: {message}")

    @property
    def counts_for_breaker(self) -> bool:
        # No request was sent when the breaker itself refused: that is not a gateway failure.
        return self.code is not ReviewErrorCode.CIRCUIT_OPEN


def retryable_status(status: int) -> bool:
    """Statuses worth one more try before any event arrived (CONTRACT §2 `LLM_MAX_RETRIES`)."""
    return status in (408, 429) or 500 <= status <= 599


# Code points no peer may smuggle into a quote, a log line or a database row: C0 controls
# (NUL included) and DEL, C1 controls, and lone surrogates (which cannot be encoded as UTF-8, so
# a driver or a log handler would fail on them). TAB, LF and CR are kept where text may span
# lines; `one_line` folds them too. Patterns, not compiled ones: `re` compiles each at its first
# use and caches it; the two classes with surrogates took 1 ms of every start-up to compile.
_UNSAFE = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]"
_UNSAFE_ONE_LINE = "[\x00-\x1f\x7f-\x9f\ud800-\udfff]"
_WHITESPACE = r"\s+"
REPLACEMENT = "\ufffd"
# Shortest piece of a secret that counts as a secret: shorter ones would mangle ordinary text
# without protecting anything worth protecting.
MIN_SECRET_CHARS = 4


def sanitize(text: str, *, one_line: bool = False) -> str:
    """`text` from a peer made safe to quote, log and store: every control character, NUL and
    lone surrogate replaced by U+FFFD; with `one_line`, line ends and runs of whitespace become
    one space as well. Redaction (`redact`) calls this; use it alone only for text that holds
    no secret by construction."""
    if one_line:
        text = re.sub(_WHITESPACE, " ", text).strip()
    # Printable ASCII holds none of the unsafe code points: most text, returned as it is.
    if text.isascii() and text.isprintable():
        return text
    if one_line:
        return re.sub(_UNSAFE_ONE_LINE, REPLACEMENT, text)
    return re.sub(_UNSAFE, REPLACEMENT, text)


def _usable(secrets: Iterable[str]) -> list[str]:
    return sorted({s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)


def _drop_secret_prefix(text: str, secrets: list[str]) -> str:
    """`text` without a trailing piece that starts a secret: where text was cut, the cut may
    have split a secret, and its first characters must not survive."""
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(text)), MIN_SECRET_CHARS - 1, -1):
            if text.endswith(secret[:size]):
                return text[: len(text) - size]
    return text


def redact(
    text: str,
    secrets: Iterable[str],
    *,
    limit: int | None = QUOTE_LIMIT,
    one_line: bool = False,
    cut: bool = False,
) -> str:
    """The one function every string from a peer (gateway, broker, database error) passes
    before it is stored, logged, printed or served.

    Unsafe characters are replaced (`sanitize`), then every configured secret by `***`, then
    the text is cut to `limit` characters. Redaction comes before the cut, and a cut drops a
    trailing piece that begins a secret, so no part of a secret straddling it survives. `cut`
    says the caller already cut `text` at its end (a body read up to a byte cap): the same
    rule applies there. Secrets shorter than 4 characters are ignored.
    """
    usable = _usable(secrets)
    text = sanitize(text, one_line=one_line)
    for secret in usable:
        text = text.replace(secret, REDACTED)
    if cut:
        text = _drop_secret_prefix(text, usable)
    if limit is not None and len(text) > limit:
        text = _drop_secret_prefix(text[: limit - 1], usable) + "…"
    return text


def redact_json(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (JSON data from a peer) with `redact` applied to every string in it, dict keys
    included, uncut. Keys that collide after redaction keep the last value."""
    usable = _usable(secrets)

    def clean(item: Any) -> Any:
        if isinstance(item, str):
            return redact(item, usable, limit=None)
        if isinstance(item, dict):
            return {clean(str(k)): clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        return item

    return clean(value)
