"""Is the gate ready for the next rollout stage? The operator's criteria against a report.

No evidence is never a pass: without criteria the answer is `NO CRITERIA` (not ready); an
error-rate or latency criterion with nothing to measure fails; fewer reviews than
`min_reviews` fails whatever else holds. A READY answer lists every criterion it checked."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from torghut.errors import InputError
from torghut.report.query import Report

NO_CRITERIA = "NO CRITERIA"


@dataclass(frozen=True)
class Criteria:
    """What "ready" means; a criterion left None is not checked. Out-of-range values are an
    `InputError` naming the command-line flag."""

    max_error_rate: float | None = None
    max_p95_ms: float | None = None
    min_reviews: int | None = None

    def __post_init__(self) -> None:
        if self.max_error_rate is not None and not 0 <= self.max_error_rate <= 1:
            raise InputError(
                f"--max-error-rate: must be a share in [0, 1] (5 % is 0.05), "
                f"got {self.max_error_rate:g}"
            )
        if self.max_p95_ms is not None and not self.max_p95_ms >= 0:
            raise InputError(f"--max-p95-ms: must not be negative, got {self.max_p95_ms:g}")
        if self.min_reviews is not None and self.min_reviews < 0:
            raise InputError(f"--min-reviews: must not be negative, got {self.min_reviews}")

    @property
    def empty(self) -> bool:
        return self.max_error_rate is None and self.max_p95_ms is None and self.min_reviews is None


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    text: str  # the numbers, e.g. "error_rate 0.012 <= max 0.050"


@dataclass(frozen=True)
class Readiness:
    """The checks made. Iterating, `len` and truth value are those of the failures, so that
    callers written for a list of failures keep working."""

    checks: list[Check] = field(default_factory=list)

    @property
    def no_criteria(self) -> bool:
        return not self.checks

    @property
    def failures(self) -> list[str]:
        if self.no_criteria:
            return [NO_CRITERIA]
        return [c.text for c in self.checks if not c.passed]

    @property
    def ready(self) -> bool:
        return not self.failures

    @property
    def status(self) -> str:
        if self.no_criteria:
            return (
                f"{NO_CRITERIA}: nothing was checked (give --max-error-rate, --max-p95-ms, "
                "--min-reviews)"
            )
        if self.ready:
            return "READY (checked: " + "; ".join(c.text for c in self.checks) + ")"
        return "NOT READY: " + "; ".join(self.failures)

    def __iter__(self) -> Iterator[str]:
        return iter(self.failures)

    def __len__(self) -> int:
        return len(self.failures)

    def __bool__(self) -> bool:
        return bool(self.failures)


def _pair(value: float, limit: float, digits: int = 3) -> tuple[str, str]:
    """Format two numbers so that they never print equal when they are not."""
    for places in range(digits, 10):
        a, b = f"{value:.{places}f}", f"{limit:.{places}f}"
        if a != b:
            return a, b
    return f"{value!r}", f"{limit!r}"


def evaluate(report: Report, criteria: Criteria) -> Readiness:
    """Every criterion given, checked against `report`, each naming itself and its numbers."""
    checks: list[Check] = []
    if criteria.min_reviews is not None:
        ok = report.reviews >= criteria.min_reviews
        sign = ">=" if ok else "<"
        checks.append(
            Check("min_reviews", ok, f"reviews {report.reviews} {sign} min {criteria.min_reviews}")
        )
    if criteria.max_error_rate is not None:
        rate = report.error_rate
        if rate is None:
            checks.append(
                Check(
                    "max_error_rate",
                    False,
                    f"error_rate unknown (no reviews) - max {criteria.max_error_rate:.3f}",
                )
            )
        else:
            shown, limit = _pair(rate, criteria.max_error_rate)
            ok = rate <= criteria.max_error_rate
            checks.append(
                Check(
                    "max_error_rate",
                    ok,
                    f"error_rate {shown} {'<=' if ok else '>'} max {limit} "
                    f"({report.errors}/{report.reviews} errors)",
                )
            )
    if criteria.max_p95_ms is not None:
        p95 = report.latency_ms.p95
        if p95 is None:
            checks.append(
                Check(
                    "max_p95_ms",
                    False,
                    f"latency_p95_ms unknown (no latency recorded) - max {criteria.max_p95_ms:g}",
                )
            )
        else:
            ok = p95 <= criteria.max_p95_ms
            checks.append(
                Check(
                    "max_p95_ms",
                    ok,
                    f"latency_p95_ms {p95} {'<=' if ok else '>'} max {criteria.max_p95_ms:g}",
                )
            )
    return Readiness(checks)
