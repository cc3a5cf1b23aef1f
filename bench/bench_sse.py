"""Benchmark torghut's SSE decoder against the decoders it replaces.

Run: `python bench/bench_sse.py` (or `--quick` for a smaller run). Every decoder is fed the same
bytes in the same chunks in the same run, and must produce the same events; times are the best
of N repetitions.

Scenarios:
  (a) a 20,000-event chat-completion-chunk-like stream in 4 KiB chunks;
  (b) one 4 MiB single-line event in 1,460-byte pieces (one TCP segment each).

Baselines:
  httpx-sse  what `EventSource.iter_sse` does over an `httpx.Response`: httpx's incremental
             UTF-8 TextDecoder (as `Response.iter_text`), then httpx-sse's SSELineDecoder and
             SSEDecoder, line by line;
  openai     `openai._streaming.SSEDecoder().iter_bytes(...)`, the SDK's own bytes path;
  quadratic  (scenario b only) a naive decoder that concatenates every chunk onto its buffer and
             re-scans the whole buffer for a line end each time.

Targets: (a) torghut at least as fast as httpx-sse; (b) within 2x of httpx-sse and at least 5x
faster than quadratic.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

try:
    from torghut.trading.llm.sse import SSEDecoder
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from torghut.trading.llm.sse import SSEDecoder

# Each decoder run returns (number of events, data of the last event) for the cross-check.
Result = tuple[int, str]
Runner = Callable[[list[bytes]], Result]


def chat_stream(events: int) -> bytes:
    """A body shaped like Jangar's: one compact chat.completion.chunk JSON per event."""
    parts: list[bytes] = [b": keepalive\n\n"]
    for i in range(events):
        chunk = {
            "id": "chatcmpl-82822aaa-5de2-41c4-ab46-deb36f24148d",
            "object": "chat.completion.chunk",
            "created": 1770595200,
            "model": "gpt-5.3-codex",
            "choices": [
                {
                    "delta": {"content": f"token {i} · ≈ $100.98 "},
                    "index": 0,
                    "finish_reason": None,
                }
            ],
            "thread_id": "019c3fb2-ac00-7373-8fc2-492106647963",
        }
        line = json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)
        parts.append(b"data: " + line.encode() + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def big_event(size: int) -> bytes:
    return b"data: " + b"x" * size + b"\n\n"


def split(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def run_torghut(chunks: list[bytes]) -> Result:
    decoder = SSEDecoder(max_event_bytes=64 * 1024 * 1024)
    count = 0
    last = ""
    for chunk in chunks:
        events = decoder.feed(chunk)
        if events:
            count += len(events)
            last = events[-1].data
    decoder.close()
    return count, last


def run_httpx_sse(chunks: list[bytes]) -> Result:
    from httpx._decoders import TextDecoder
    from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
    from httpx_sse._decoders import SSELineDecoder

    text_decoder = TextDecoder()
    line_decoder = SSELineDecoder()
    decoder = HttpxSSEDecoder()
    count = 0
    last = ""

    def texts() -> Iterator[str]:
        for chunk in chunks:
            text = text_decoder.decode(chunk)
            if text:
                yield text
        text = text_decoder.flush()
        if text:
            yield text

    def lines() -> Iterator[str]:
        for text in texts():
            yield from line_decoder.decode(text)
        yield from line_decoder.flush()

    # Same steps as httpx_sse.EventSource.iter_sse.
    for line in lines():
        sse = decoder.decode(line.rstrip("\n"))
        if sse is not None:
            count += 1
            last = sse.data
    return count, last


def run_openai(chunks: list[bytes]) -> Result:
    from openai._streaming import SSEDecoder as OpenAISSEDecoder

    count = 0
    last = ""
    for sse in OpenAISSEDecoder().iter_bytes(iter(chunks)):
        count += 1
        last = sse.data
    return count, last


def run_quadratic(chunks: list[bytes]) -> Result:
    """Deliberately naive: the whole buffer is rebuilt and re-scanned on every chunk."""
    buffer = b""
    data: list[str] = []
    count = 0
    last = ""
    for chunk in chunks:
        buffer = buffer + chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line = buffer[:end].decode("utf-8", "replace")
            buffer = buffer[end + 1 :]
            if not line:
                if data:
                    count += 1
                    last = "\n".join(data)
                    data = []
            elif line.startswith("data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(" ") else value)
    return count, last


@dataclass
class Row:
    scenario: str
    name: str
    seconds: float
    rate: str
    result: Result


def best_of(runner: Runner, chunks: list[bytes], repeat: int) -> tuple[float, Result]:
    best = float("inf")
    result: Result = (0, "")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = runner(chunks)
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(
    scenario: str,
    body: bytes,
    chunk_size: int,
    runners: dict[str, Runner],
    repeats: dict[str, int],
    unit: str,
) -> list[Row]:
    chunks = split(body, chunk_size)
    rows: list[Row] = []
    for name, runner in runners.items():
        seconds, result = best_of(runner, chunks, repeats[name])
        if unit == "events":
            rate = f"{result[0] / seconds:,.0f} events/s"
        else:
            rate = f"{len(body) / seconds / 1e6:,.1f} MB/s"
        rows.append(Row(scenario, name, seconds, rate, result))
    return rows


def check_agreement(rows: list[Row]) -> list[str]:
    """Every decoder must have decoded the same events, or the timings mean nothing."""
    problems: list[str] = []
    reference = rows[0]
    for row in rows[1:]:
        if row.result != reference.result:
            problems.append(
                f"{row.scenario}: {row.name} decoded {row.result[0]} events "
                f"(last {len(row.result[1])} chars), torghut {reference.result[0]} "
                f"(last {len(reference.result[1])} chars)"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    args = parser.parse_args(argv)

    n_events = 2_000 if args.quick else 20_000
    big_size = (2 * 1024 * 1024) if args.quick else (4 * 1024 * 1024)
    repeat = 3 if args.quick else 7
    # The quadratic baseline is slow by design; fewer repeats show the gap well enough.
    quad_repeat = 3

    runners_a: dict[str, Runner] = {
        "torghut": run_torghut,
        "httpx-sse": run_httpx_sse,
        "openai": run_openai,
    }
    runners_b: dict[str, Runner] = {**runners_a, "quadratic": run_quadratic}
    repeats = {"torghut": repeat, "httpx-sse": repeat, "openai": repeat, "quadratic": quad_repeat}

    label_a = f"(a) {n_events:,} chat chunks, 4 KiB reads"
    label_b = f"(b) {big_size // 1024:,} KiB single-line event, 1,460 B reads"
    rows_a = measure(label_a, chat_stream(n_events), 4096, runners_a, repeats, "events")
    rows_b = measure(label_b, big_event(big_size), 1460, runners_b, repeats, "bytes")

    print(f"Python {sys.version.split()[0]}; best of {repeat} (quadratic: {quad_repeat})")
    for rows in (rows_a, rows_b):
        print()
        print(rows[0].scenario)
        print(f"  {'decoder':<10} {'seconds':>10}  {'throughput':>20}  events")
        for row in rows:
            print(f"  {row.name:<10} {row.seconds:>10.4f}  {row.rate:>20}  {row.result[0]}")
        torghut = rows[0].seconds
        for row in rows[1:]:
            print(f"  torghut vs {row.name}: {row.seconds / torghut:.2f}x")

    by_name_a = {row.name: row.seconds for row in rows_a}
    by_name_b = {row.name: row.seconds for row in rows_b}
    targets = [
        (
            "(a) torghut at least as fast as httpx-sse",
            by_name_a["torghut"] <= by_name_a["httpx-sse"],
        ),
        (
            "(b) torghut within 2x of httpx-sse",
            by_name_b["torghut"] <= 2 * by_name_b["httpx-sse"],
        ),
        (
            "(b) torghut at least 5x faster than quadratic",
            by_name_b["torghut"] * 5 <= by_name_b["quadratic"],
        ),
    ]
    print()
    for text, met in targets:
        print(f"  [{'met' if met else 'MISSED'}] {text}")

    problems = check_agreement(rows_a) + check_agreement(rows_b)
    for problem in problems:
        print(f"  MISMATCH {problem}")
    return 0 if not problems and all(met for _, met in targets) else 1


if __name__ == "__main__":
    raise SystemExit(main())
