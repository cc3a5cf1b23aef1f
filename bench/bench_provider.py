"""Benchmarks of the Jangar review provider.

(c) CPU cost of one whole review (request, 50-chunk stream, answer) through `JangarProvider`,
    against the openai SDK's own streaming call consuming the same stream. The server runs in a
    subprocess so only the client's CPU is counted (getrusage of this process).
(d) Peak memory while a gateway streams 200 MB at the client: the review must fail with
    `response_too_large` and the client's peak RSS grow by less than 20 MB. The client runs in a
    fresh subprocess so its baseline is clean.

    python bench/bench_provider.py            # full run
    python bench/bench_provider.py --quick    # fewer repetitions, smaller flood
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from tables import table  # bench/tables.py (scripts run from bench/)

CPU_TARGET_RATIO = 0.25
RSS_BUDGET_MB = 20.0
CAP_BYTES = 1_048_576
MESSAGES: list[Any] = [
    {"role": "system", "content": "You review trades. Answer with one JSON object."},
    {"role": "user", "content": "Review: buy 5 AAPL at market, price 100.98, cap $5,000."},
]


# --------------------------------------------------------------------------------------------
# Server (runs in a subprocess)


def stream_body(chunks: int = 50) -> bytes:
    """A Jangar-like stream: `chunks` content deltas, usage, stop, [DONE]."""
    events = []
    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1770595200,
        "model": "gpt-5.3-codex",
        "thread_id": "019c3fb2-ac00-7373-8fc2-492106647963",
    }
    for i in range(chunks):
        text = ("\n" if i == 0 else "") + f"part {i:02d} of the answer; "
        events.append(
            {**base, "choices": [{"delta": {"content": text}, "index": 0, "finish_reason": None}]}
        )
    events.append(
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 1810, "completion_tokens": 480, "total_tokens": 2290},
        }
    )
    events.append({**base, "choices": [{"delta": {}, "index": 0, "finish_reason": "stop"}]})
    out = b"".join(
        b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events
    )
    return out + b"data: [DONE]\n\n"


async def _read_request(reader: asyncio.StreamReader) -> bool:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return True


async def _serve(mode: str, flood_mb: int) -> None:
    body = stream_body()
    stream_response = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await _read_request(reader):
                if mode == "stream":
                    writer.write(stream_response)
                    await writer.drain()
                    continue
                # flood: one data event that never ends, `flood_mb` MB of it, then close.
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"connection: close\r\n\r\n"
                    b'data: {"choices":[{"delta":{"content":"'
                )
                block = b"x" * 65536
                for _ in range(flood_mb * 16):
                    writer.write(block)
                    await writer.drain()
                break
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=128)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def server_process(mode: str, flood_mb: int = 200) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, "--flood-mb", str(flood_mb)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------------------------
# (c) CPU per review


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _cpu_torghut(url: str, n: int, warmup: int) -> tuple[float, float]:
    from torghut.trading.llm.jangar import JangarConfig, JangarProvider

    provider = JangarProvider(JangarConfig(base_url=url, model="gpt-5.3-codex"))
    try:
        for _ in range(warmup):
            await provider.complete(MESSAGES)
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        for _ in range(n):
            result = await provider.complete(MESSAGES)
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
        assert result.text.startswith("part 00") and result.usage is not None
    finally:
        await provider.aclose()
    return cpu / n, wall / n


async def _cpu_openai_sdk(url: str, n: int, warmup: int) -> tuple[float, float]:
    import openai

    client = openai.AsyncOpenAI(api_key="bench", base_url=url + "/v1", max_retries=0)

    async def one() -> str:
        stream = await client.chat.completions.create(
            model="gpt-5.3-codex",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = []
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    parts.append(choice.delta.content)
        return "".join(parts)

    try:
        for _ in range(warmup):
            await one()
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        for _ in range(n):
            text = await one()
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
        assert "part 49" in text
    finally:
        await client.close()
    return cpu / n, wall / n


def bench_cpu(n: int) -> tuple[list[list[str]], float]:
    warmup = max(5, n // 10)
    with server_process("stream") as url:
        ours = asyncio.run(_cpu_torghut(url, n, warmup))
        sdk = asyncio.run(_cpu_openai_sdk(url, n, warmup))
    ratio = ours[0] / sdk[0]
    rows = [
        [
            "torghut JangarProvider",
            f"{ours[0] * 1000:.3f}",
            f"{ours[1] * 1000:.3f}",
            f"{ratio:.3f}",
        ],
        [
            "openai SDK AsyncOpenAI stream (baseline)",
            f"{sdk[0] * 1000:.3f}",
            f"{sdk[1] * 1000:.3f}",
            "1.000",
        ],
    ]
    return rows, ratio


# --------------------------------------------------------------------------------------------
# (d) peak memory under a flood (client in a fresh subprocess)


def _vm_hwm_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _memory_client(url: str) -> dict[str, Any]:
    from torghut.errors import ReviewError
    from torghut.trading.llm.jangar import JangarConfig, JangarProvider

    provider = JangarProvider(
        JangarConfig(
            base_url=url, model="gpt-5.3-codex", max_response_bytes=CAP_BYTES, timeout_seconds=60
        )
    )
    before = _vm_hwm_kb()
    started = time.perf_counter()
    code = "success"
    try:
        await provider.complete(MESSAGES)
    except ReviewError as exc:
        code = exc.code.value
    finally:
        await provider.aclose()
    return {
        "code": code,
        "before_kb": before,
        "after_kb": _vm_hwm_kb(),
        "seconds": time.perf_counter() - started,
    }


def bench_memory(flood_mb: int) -> tuple[list[list[str]], dict[str, Any]]:
    with server_process("flood", flood_mb) as url:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-client", url],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    growth_mb = (result["after_kb"] - result["before_kb"]) / 1024
    result["growth_mb"] = growth_mb
    rows = [
        [
            f"torghut JangarProvider vs {flood_mb} MB stream",
            result["code"],
            f"{result['before_kb'] / 1024:.1f}",
            f"{result['after_kb'] / 1024:.1f}",
            f"{growth_mb:.2f}",
            f"{growth_mb / RSS_BUDGET_MB:.3f}",
        ],
    ]
    return rows, result


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller flood")
    parser.add_argument("--reviews", type=int, default=None, help="reviews per client in (c)")
    parser.add_argument("--flood-mb", type=int, default=None, help="MB streamed in (d)")
    parser.add_argument("--serve", choices=["stream", "flood"], help=argparse.SUPPRESS)
    parser.add_argument("--memory-client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args.serve, args.flood_mb or 200))
        return 0
    if args.memory_client:
        print(json.dumps(asyncio.run(_memory_client(args.memory_client))))
        return 0

    reviews = args.reviews or (40 if args.quick else 200)
    flood_mb = args.flood_mb or (50 if args.quick else 200)
    print(f"python {sys.version.split()[0]}, pid {os.getpid()}, {reviews} reviews per client")
    print()
    print(f"(c) CPU per review, 50-chunk stream from a server in a subprocess ({reviews} each)")
    rows, ratio = bench_cpu(reviews)
    print(table(["client", "cpu ms/review", "wall ms/review", "cpu ratio"], rows))
    cpu_ok = ratio <= CPU_TARGET_RATIO
    print(
        f"ratio torghut / openai SDK = {ratio:.3f} (target <= {CPU_TARGET_RATIO}): "
        f"{'PASS' if cpu_ok else 'MISS'}"
    )
    print()
    print(f"(d) peak RSS while the gateway streams {flood_mb} MB (cap {CAP_BYTES} bytes)")
    rows, mem = bench_memory(flood_mb)
    print(
        table(
            [
                "client",
                "outcome",
                "VmHWM before MB",
                "VmHWM after MB",
                "growth MB",
                f"growth / {RSS_BUDGET_MB:g} MB budget",
            ],
            rows,
        )
    )
    mem_ok = mem["code"] == "response_too_large" and mem["growth_mb"] < RSS_BUDGET_MB
    print(
        f"failed with {mem['code']} after {mem['seconds'] * 1000:.0f} ms, "
        f"RSS growth {mem['growth_mb']:.2f} MB (budget < {RSS_BUDGET_MB:g} MB): "
        f"{'PASS' if mem_ok else 'MISS'}"
    )
    return 0 if cpu_ok and mem_ok else 1


if __name__ == "__main__":
    sys.exit(main())
