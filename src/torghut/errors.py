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

from collections.abc import Iterable
from enum import StrEnum

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


def redact(text: str, secrets: Iterable[str], *, limit: int | None = QUOTE_LIMIT) -> str:
    """Replace every configured secret in `text` by `***`, then cut it to `limit` characters.

    Redaction happens before cutting so that a secret straddling the cut cannot leak half of
    itself. Secrets shorter than 4 characters are ignored: replacing them would mangle
    ordinary text without protecting anything worth protecting.
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
