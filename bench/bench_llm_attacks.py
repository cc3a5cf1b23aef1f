"""Issue 13's attacks on the review providers, each in its own process against a loopback
server: the error code, the wall time, the peak RSS and the longest event-loop stall.

Run: `python bench/bench_llm_attacks.py [--baseline-src PATH]`. With `--baseline-src` (a
checkout's `src`, e.g. the code before the fix), every attack runs on both, in the same run,
and the table shows baseline -> this tree. Targets: the right code within the deadline, RSS
under 150 MB, no stall over 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REVIEW = '{"verdict":"approve","confidence":0.9,"rationale":"ok","risk_flags":[]}'


def _answer() -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"content": "\n" + REVIEW}}]}
    return f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()


def _gzip_bomb(size: int) -> bytes:
    """`size` zero bytes gzipped (about 200 KB for 200 MiB), built without holding them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    zeros = bytes(1 << 20)
    parts = [packer.compress(zeros) for _ in range(size >> 20)]
    return b"".join(parts) + packer.flush()


def _scripts(attack: str) -> tuple[list[Any], dict[str, Any]]:
    """The server's script for `attack`, and provider settings."""
    from tests.integration.rawserver import Hold, Repeat, Send, Sleep, head, respond

    sse_head = head(200, {"content-type": "text/event-stream", "connection": "close"})
    if attack == "retry-1M-digits":
        body = b"retry: " + b"9" * 1_040_000 + b"\n\n" + _answer()
        return [respond(body)], {"timeout_seconds": 2.0}
    if attack == "endless-500-body":
        return [[Send(head(500, {"content-type": "text/plain"})), Repeat(b"y" * 65536, 0.0)]], {
            "timeout_seconds": 10.0
        }
    if attack == "gzip-bomb-500":
        bomb = _gzip_bomb(200 * 1024 * 1024)
        hdrs = {
            "content-type": "text/plain",
            "content-encoding": "gzip",
            "content-length": str(len(bomb)),
        }
        return [[Send(head(500, hdrs)), Send(bomb), Hold()]], {"timeout_seconds": 10.0}
    if attack == "answer-at-0.95s-of-1s":
        return [[Send(sse_head), Sleep(0.95), Send(_answer()), Hold()]], {"timeout_seconds": 1.0}
    if attack == "garbage-status-line":
        return [[Send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), Hold()]], {"max_retries": 1}
    if attack == "event-ping":
        return [respond(b"event: ping\ndata: {}\n\n" + _answer())], {}
    if attack == "done-then-error-frame":
        return [respond(_answer() + b'data: {"error":{"message":"late"}}\n\n')], {}
    if attack == "done-then-event-error":
        return [respond(_answer() + b"event: error\n\n")], {}
    if attack == "deep-nesting":
        return [respond(b"data: " + b"[" * 200_000 + b"\n\n" + _answer())], {}
    raise SystemExit(f"unknown attack {attack}")


ATTACKS = [
    "retry-1M-digits",
    "endless-500-body",
    "gzip-bomb-500",
    "answer-at-0.95s-of-1s",
    "garbage-status-line",
    "event-ping",
    "done-then-error-frame",
    "done-then-event-error",
    "deep-nesting",
]


async def _one(provider_kind: str, attack: str) -> dict[str, Any]:
    from tests.integration.rawserver import RawServer

    from torghut.errors import ReviewError

    scripts, overrides = _scripts(attack)
    values: dict[str, Any] = {
        "timeout_seconds": 10.0,
        "connect_timeout_seconds": 2.0,
        "first_token_timeout_seconds": 8.0,
        "idle_timeout_seconds": 8.0,
        "max_retries": 0,
        "model": "gpt-x",
        **overrides,
    }
    stall = 0.0

    async def ticker() -> None:
        nonlocal stall
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            stall = max(stall, now - last - 0.01)
            last = now

    async with RawServer(scripts) as server:
        provider: Any
        if provider_kind == "jangar":
            from torghut.trading.llm.jangar import JangarConfig, JangarProvider

            provider = JangarProvider(JangarConfig(base_url=server.url, **values))
        else:
            from torghut.trading.llm.openai import OpenAIConfig, OpenAIProvider

            provider = OpenAIProvider(
                OpenAIConfig(api_key="k", base_url=server.url + "/v1", **values)
            )
        tick = asyncio.create_task(ticker())
        started = time.monotonic()
        try:
            await provider.complete([{"role": "user", "content": "review"}])
            code = "ok"
        except ReviewError as exc:
            code = exc.code.value
        except Exception as exc:  # what escaped the error mapping
            code = f"raised {type(exc).__name__}"
        seconds = time.monotonic() - started
        tick.cancel()
        await provider.aclose()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "code": code,
        "s": round(seconds, 2),
        "rss_mb": round(rss_mb),
        "stall_ms": round(stall * 1000),
    }


def _run(src: Path, provider: str, attack: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{src}:{ROOT}"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", provider, attack],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    except (IndexError, ValueError):
        return {
            "code": f"crashed: {done.stderr.strip().splitlines()[-1:]}",
            "s": 0,
            "rss_mb": 0,
            "stall_ms": 0,
        }


def _cell(r: dict[str, Any]) -> str:
    return f"{r['code']} {r['s']}s {r['rss_mb']}MB stall {r['stall_ms']}ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--child", nargs=2, metavar=("PROVIDER", "ATTACK"), help=argparse.SUPPRESS)
    parser.add_argument("--only", help="comma-separated attack names")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_one(*args.child))))
        return 0
    attacks = args.only.split(",") if args.only else ATTACKS
    for provider in ("jangar", "openai"):
        for attack in attacks:
            after = _run(ROOT / "src", provider, attack)
            line = f"{provider:7} {attack:24} "
            if args.baseline_src:
                line += f"{_cell(_run(args.baseline_src, provider, attack)):42} -> "
            print(line + _cell(after), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
