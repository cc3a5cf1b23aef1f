"""A scripted TCP server on 127.0.0.1 for HTTP client tests.

It answers each HTTP request with a script of raw steps (send bytes, sleep, drip bytes, repeat,
close, reset, hold open), so a test controls every byte and its timing: split events,
keep-alives forever, a byte a second, a body that never ends. It records every request (headers
and body) and counts connections, and it shuts down cleanly even with connections still hung.

    async with RawServer([respond(b"...")]) as server:
        ... server.url ...

Scripts are chosen by request number (0, 1, 2, ...); the last script repeats. A script that
ends without `Close`, `Reset` or `Hold` leaves the connection open for the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any


class Step:
    """One thing the server does on a connection."""


@dataclass(frozen=True)
class Send(Step):
    data: bytes


@dataclass(frozen=True)
class Sleep(Step):
    seconds: float


@dataclass(frozen=True)
class Drip(Step):
    """Send `data` one byte at a time, `interval` seconds apart."""

    data: bytes
    interval: float


@dataclass(frozen=True)
class Repeat(Step):
    """Send `data` every `interval` seconds, `count` times (None: until the peer goes)."""

    data: bytes
    interval: float
    count: int | None = None


@dataclass(frozen=True)
class Close(Step):
    """End the connection with a FIN."""


@dataclass(frozen=True)
class Reset(Step):
    """End the connection with a RST."""


@dataclass(frozen=True)
class Hold(Step):
    """Keep the connection open, sending nothing, until the peer closes or the server stops."""


Script = Sequence[Step]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    header_names: list[str] = field(default_factory=list)
    received_at: float = 0.0  # event-loop time

    def json(self) -> Any:
        return json.loads(self.body)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def head(status: int = 200, headers: dict[str, str] | None = None) -> bytes:
    """A status line and headers, ending with the blank line."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


SSE_HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


def respond(
    body: bytes,
    status: int = 200,
    *,
    content_type: str = "text/event-stream",
    headers: dict[str, str] | None = None,
    pieces: Sequence[int] | int | None = None,
    gap: float = 0.002,
    length: bool = False,
    close: bool = True,
) -> list[Step]:
    """A whole response. The body is delimited by closing the connection (as Jangar does)
    unless `length`; `pieces` splits it into separate writes (sizes, or a count of equal
    parts) with `gap` seconds between them, so the client reads it in pieces."""
    hdrs = {"content-type": content_type, "cache-control": "no-cache"}
    hdrs.update(headers or {})
    if length:
        hdrs["content-length"] = str(len(body))
    else:
        hdrs["connection"] = "close"
    steps: list[Step] = [Send(head(status, hdrs))]
    steps += split(body, pieces, gap)
    if close or not length:
        steps.append(Close())
    return steps


def split(data: bytes, pieces: Sequence[int] | int | None, gap: float = 0.002) -> list[Step]:
    if pieces is None:
        return [Send(data)] if data else []
    if isinstance(pieces, int):
        size = max(1, -(-len(data) // pieces))
        sizes: list[int] = [size] * pieces
    else:
        sizes = list(pieces)
    steps: list[Step] = []
    offset = 0
    for size in sizes:
        if offset >= len(data):
            break
        steps += [Send(data[offset : offset + size]), Sleep(gap)]
        offset += size
    if offset < len(data):
        steps.append(Send(data[offset:]))
    return steps


def sse(*events: str | dict[str, Any], crlf: bool = False) -> bytes:
    """`data:` events (a dict is sent as compact JSON), each ending with a blank line."""
    nl = "\r\n" if crlf else "\n"
    out = []
    for ev in events:
        data = ev if isinstance(ev, str) else json.dumps(ev, separators=(",", ":"))
        out.append(f"data: {data}{nl}{nl}")
    return "".join(out).encode()


class RawServer:
    def __init__(
        self,
        scripts: Sequence[Script] | Callable[[int], Script],
        *,
        read_request: bool = True,
    ) -> None:
        self._scripts = scripts
        self._read_request = read_request
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.closed_by_peer = 0

    @property
    def active(self) -> int:
        """Connections still open on the server side."""
        return len(self._tasks)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _script(self, index: int) -> Script:
        if callable(self._scripts):
            return self._scripts(index)
        return self._scripts[min(index, len(self._scripts) - 1)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            while True:
                if self._read_request:
                    request = await _read_request(reader)
                    if request is None:
                        break
                    index = len(self.requests)
                    self.requests.append(request)
                else:
                    index = self.connections - 1
                if await self._run(self._script(index), reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.closed_by_peer += 1
        except asyncio.CancelledError:
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _run(
        self, script: Script, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Play one script; True when the connection is finished."""
        for step in script:
            if isinstance(step, Send):
                writer.write(step.data)
                await writer.drain()
            elif isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, Drip):
                for i in range(len(step.data)):
                    writer.write(step.data[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(step.interval)
            elif isinstance(step, Repeat):
                n = 0
                while step.count is None or n < step.count:
                    if writer.transport.is_closing():
                        return True
                    writer.write(step.data)
                    await writer.drain()
                    n += 1
                    await asyncio.sleep(step.interval)
            elif isinstance(step, Close):
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                writer.close()
                return True
            elif isinstance(step, Reset):
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return True
            elif isinstance(step, Hold):
                while await reader.read(65536):
                    pass
                return True
        return False


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    try:
        head_bytes = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head_bytes.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    names: list[str] = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        names.append(name.strip().lower())
        headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    loop_time = asyncio.get_running_loop().time()
    return RecordedRequest(method, path, headers, body, names, loop_time)


@contextlib.contextmanager
def unanswered_port(fill: int = 8) -> Iterator[int | None]:
    """A port on 127.0.0.1 where a new TCP connect hangs: a listening socket that never accepts,
    its accept queue filled up first. Yields None when this kernel completes the connect anyway
    (then a connect timeout cannot be shown deterministically on loopback)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        hung = False
        for _ in range(fill):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            fillers.append(s)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(0.3)
            try:
                probe.connect(("127.0.0.1", port))
            except TimeoutError:
                hung = True
            except OSError:
                pass
            finally:
                probe.close()
            if hung:
                break
        yield port if hung else None
    finally:
        for s in fillers:
            s.close()
        listener.close()
