"""A local OpenAI-compatible server on 127.0.0.1, for tests, benchmarks and manual runs.

It speaks what symai's own vLLM and llama.cpp chat engines send and ask at construction:
``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /props``, ``POST /tokenize``,
``/detokenize`` and ``/apply-template``. Answers are deterministic and contain the last user
message, so a test can prove that no answer crossed items, and carry ``usage`` figures
from a chars/4 token count. Behaviour a real provider shows can be switched on: latency
(fixed or uniform in a range), a cap on concurrent requests (more wait their turn), RPM and
TPM limits that answer 429 with ``Retry-After``, a fraction of 500s, of dropped
connections and of responses slower than any sane timeout.

One asyncio loop serves every connection (HTTP/1.1 keep-alive via h11, which httpx uses
too), so hundreds of concurrent requests cost no threads. It runs in a thread of the
calling process or, with ``process=True``, in a child process, so its CPU does not compete
with the client's under the GIL (benchmarks). ``GET /_stats`` and ``POST /_config`` (change
behaviour, reset counters) work in both. From a shell::

    python -m symbatcher.testing.server --port 8000 --latency 0.1 --rpm 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import h11
import httpx

MODEL_ID = "symbatcher-local"


@dataclass
class ServerConfig:
    """How the server behaves; every field can be changed while it runs (``/_config``)."""

    latency: float | tuple[float, float] = 0.0  # seconds per request, or a uniform range
    max_concurrency: int | None = None  # requests served at once; more wait their turn
    rpm: float | None = None  # requests per minute, then 429
    tpm: float | None = None  # tokens (prompt + completion) per minute, then 429
    burst_seconds: float = 1.0  # a limit admits this many seconds' worth at once
    error_rate: float = 0.0  # fraction answered 500
    drop_rate: float = 0.0  # fraction whose connection is closed without an answer
    slow_rate: float = 0.0  # fraction answered only after ``slow_latency``
    slow_latency: float = 30.0
    context_tokens: int = 8192
    seed: int = 0


@dataclass
class ServerStats:
    requests: int = 0  # chat completions received
    ok: int = 0
    rate_limited: int = 0  # 429s sent
    errors: int = 0  # 500s sent
    dropped: int = 0
    slow: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    other_requests: int = 0  # discovery, tokenize, admin
    connections: int = 0  # TCP connections accepted (keep-alive reuse shows here)
    proxied: int = 0  # requests for a full URL: a client's proxy settings sent them here
    started: float = field(default_factory=time.monotonic)

    def snapshot(self) -> dict[str, Any]:
        data = asdict(self)
        data["elapsed"] = time.monotonic() - data.pop("started")
        return data


class _Limit:
    """A GCRA limiter ("virtual scheduling"), as providers meter RPM and TPM: ``rate`` per
    second, with up to ``burst`` seconds' worth admitted at once."""

    def __init__(self, per_minute: float, burst_seconds: float) -> None:
        self.rate = per_minute / 60.0
        self.tolerance = burst_seconds
        self.tat = 0.0  # theoretical arrival time of the next unit

    def check(self, amount: float, now: float) -> float:
        """0 if ``amount`` fits now, else the seconds until it would."""
        tat = max(self.tat, now)
        increment = amount / self.rate
        allowed_at = tat + increment - max(self.tolerance, increment)
        return max(0.0, allowed_at - now)

    def take(self, amount: float, now: float) -> None:
        self.tat = max(self.tat, now) + amount / self.rate


def count_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else json.dumps(content)


class _App:
    """Routing, behaviour and counters; all on the server's event loop."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.stats = ServerStats()
        self._apply()

    def _apply(self) -> None:
        c = self.config
        self.rng = random.Random(c.seed)
        self.rpm = _Limit(c.rpm, c.burst_seconds) if c.rpm else None
        self.tpm = _Limit(c.tpm, c.burst_seconds) if c.tpm else None
        self.slots = asyncio.Semaphore(c.max_concurrency) if c.max_concurrency else None

    def reconfigure(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(ServerConfig)}
        unknown = set(changes) - known - {"reset"}
        if unknown:
            raise ValueError(f"unknown server settings: {sorted(unknown)}")
        for key, value in changes.items():
            if key != "reset":
                setattr(self.config, key, tuple(value) if isinstance(value, list) else value)
        if changes.get("reset", True):
            self.stats = ServerStats()
        self._apply()

    # ------------------------------------------------------------------ routes
    async def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body); ``None`` as the body means: drop the connection."""
        if "://" in path.split("?", 1)[0]:  # absolute-form: sent through a proxy (RFC 9112)
            self.stats.proxied += 1
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        path = path.split("?", 1)[0]
        if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            return await self.chat(body)
        self.stats.other_requests += 1
        if method == "GET" and path in ("/v1/models", "/models"):
            info = {"id": MODEL_ID, "object": "model", "max_model_len": self.config.context_tokens}
            return 200, {}, {"object": "list", "data": [info]}
        if method == "GET" and path == "/props":
            return 200, {}, {"default_generation_settings": {"n_ctx": self.config.context_tokens}}
        if method == "POST" and path == "/tokenize":
            request = json.loads(body or b"{}")
            text = str(request.get("prompt", request.get("content", "")))
            tokens = list(range(count_tokens(text)))
            return 200, {}, {"count": len(tokens), "tokens": tokens, "max_model_len": 8192}
        if method == "POST" and path == "/detokenize":
            return 200, {}, {"content": ""}
        if method == "POST" and path == "/apply-template":
            request = json.loads(body or b"{}")
            messages = request.get("messages", [])
            return 200, {}, {"prompt": "\n".join(_message_text(m.get("content")) for m in messages)}
        if method == "GET" and path == "/_stats":
            return 200, {}, self.stats.snapshot()
        if method == "POST" and path == "/_config":
            try:
                self.reconfigure(json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:
                return 400, {}, {"error": {"message": str(exc), "type": "invalid_request"}}
            return 200, {}, asdict(self.config)
        if method == "GET" and path == "/health":
            return 200, {}, {"status": "ok"}
        return 404, {}, {"error": {"message": f"no route {method} {path}", "type": "not_found"}}

    async def chat(self, body: bytes) -> tuple[int, dict[str, str], Any]:
        stats, config = self.stats, self.config
        stats.requests += 1
        try:
            request = json.loads(body)
            messages = request["messages"]
        except (ValueError, KeyError, TypeError):
            return (
                400,
                {},
                {"error": {"message": "expected JSON with 'messages'", "type": "invalid_request"}},
            )
        texts = [_message_text(m.get("content")) for m in messages]
        users = [t for m, t in zip(messages, texts, strict=True) if m.get("role") == "user"]
        answer = f"echo: {users[-1] if users else ''}"
        prompt_tokens = sum(count_tokens(t) + 4 for t in texts)
        completion_tokens = count_tokens(answer)
        max_tokens = request.get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens > 0:
            completion_tokens = min(completion_tokens, max_tokens)

        now = time.monotonic()
        waits = [0.0]
        if self.rpm is not None:
            waits.append(self.rpm.check(1, now))
        if self.tpm is not None:
            waits.append(self.tpm.check(prompt_tokens + completion_tokens, now))
        if max(waits) > 0:
            stats.rate_limited += 1
            kind = "requests" if self.rpm is not None and waits[1] > 0 else "tokens"
            retry = max(waits)
            headers = {
                "retry-after": f"{retry:.3f}",
                "retry-after-ms": str(math.ceil(retry * 1000)),
            }
            message = f"Rate limit reached for {kind} per minute. Please try again in {retry:.3f}s."
            return (
                429,
                headers,
                {"error": {"message": message, "type": kind, "code": "rate_limit_exceeded"}},
            )
        if self.rpm is not None:
            self.rpm.take(1, now)
        if self.tpm is not None:
            self.tpm.take(prompt_tokens + completion_tokens, now)

        roll = self.rng.random()
        if roll < config.drop_rate:
            stats.dropped += 1
            return 0, {}, None
        roll -= config.drop_rate
        delay = self._latency()
        if roll < config.slow_rate:
            stats.slow += 1
            delay = config.slow_latency
        roll -= config.slow_rate
        if self.slots is not None:
            await self.slots.acquire()
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            stats.in_flight -= 1
            if self.slots is not None:
                self.slots.release()
        if roll < config.error_rate:
            stats.errors += 1
            return 500, {}, {"error": {"message": "injected server error", "type": "server_error"}}
        stats.ok += 1
        stats.prompt_tokens += prompt_tokens
        stats.completion_tokens += completion_tokens
        return (
            200,
            {},
            {
                "id": f"chatcmpl-{stats.requests}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(request.get("model") or MODEL_ID),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    def _latency(self) -> float:
        latency = self.config.latency
        if isinstance(latency, tuple | list):
            return self.rng.uniform(float(latency[0]), float(latency[1]))
        return float(latency)


async def _connection(
    app: _App, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    app.stats.connections += 1
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request: h11.Request | None = None
            body = bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data and conn.their_state is not h11.DONE:
                        return
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            assert request is not None
            status, headers, payload = await app.handle(
                request.method.decode(), request.target.decode(), bytes(body)
            )
            if payload is None:  # drop the connection, as a crashed upstream would
                return
            data = json.dumps(payload).encode()
            response_headers = [
                ("content-type", "application/json"),
                ("content-length", str(len(data))),
                *headers.items(),
            ]
            writer.write(conn.send(h11.Response(status_code=status, headers=response_headers)))
            writer.write(conn.send(h11.Data(data=data)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (h11.RemoteProtocolError, ConnectionError, asyncio.CancelledError):
        return  # a client that went away, or the server stopping
    finally:
        writer.close()


async def _serve(app: _App, port: int, ready: Callable[[int, asyncio.Server], None]) -> None:
    server = await asyncio.start_server(
        lambda r, w: _connection(app, r, w), "127.0.0.1", port, backlog=1024
    )
    ready(server.sockets[0].getsockname()[1], server)
    async with server:
        with suppress(asyncio.CancelledError):
            await server.serve_forever()


class LocalServer:
    """The server as a context manager: ``with LocalServer(latency=0.1) as server: server.url``.

    ``process=True`` runs it in a child process (its own GIL); else a daemon thread of this
    process runs the event loop. Either way ``stats()`` and ``configure()`` talk to it over
    HTTP, and leaving the block stops it.
    """

    def __init__(
        self, config: ServerConfig | None = None, *, process: bool = False, **settings: Any
    ) -> None:
        self.config = config or ServerConfig()
        for key, value in settings.items():
            if not hasattr(self.config, key):
                raise TypeError(f"unknown server setting {key!r}")
            setattr(self.config, key, value)
        self.process = process
        self.port = 0
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._client = httpx.Client(timeout=10.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalServer:
        if self.process:
            args = [
                sys.executable,
                "-m",
                "symbatcher.testing.server",
                "--port",
                "0",
                "--config",
                json.dumps(asdict(self.config)),
            ]
            self._child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
            assert self._child.stdout is not None
            line = self._child.stdout.readline()
            if not line.startswith("listening on "):
                self._child.kill()
                raise RuntimeError(f"the local server did not start: {line!r}")
            self.port = int(line.rsplit(":", 1)[1])
            return self
        started = threading.Event()
        app = _App(self.config)

        def ready(port: int, server: asyncio.Server) -> None:
            self.port, self._loop, self._server = port, asyncio.get_running_loop(), server
            started.set()

        self._thread = threading.Thread(
            target=lambda: asyncio.run(_serve(app, 0, ready)),
            name="symbatcher-local-server",
            daemon=True,
        )
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the local server did not start")
        return self

    def stop(self) -> None:
        self._client.close()
        if self._child is not None:
            self._child.terminate()
            try:
                self._child.wait(5)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
            if self._child.stdout is not None:
                self._child.stdout.close()
            self._child = None
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_cancel_all, self._loop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._client.get(f"{self.url}/_stats").json()
        return result

    def configure(self, reset: bool = True, **changes: Any) -> None:
        """Change behaviour while it runs (and, by default, zero the counters)."""
        response = self._client.post(f"{self.url}/_config", json={**changes, "reset": reset})
        if response.status_code != 200:
            raise ValueError(response.json()["error"]["message"])


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()


@contextmanager
def local_server(**settings: Any) -> Iterator[LocalServer]:
    with LocalServer(**settings) as server:
        yield server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m symbatcher.testing.server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--latency", type=float, help="seconds per request")
    parser.add_argument("--max-concurrency", type=int)
    parser.add_argument("--rpm", type=float)
    parser.add_argument("--tpm", type=float)
    parser.add_argument("--error-rate", type=float)
    parser.add_argument("--drop-rate", type=float)
    parser.add_argument("--slow-rate", type=float)
    parser.add_argument("--config", help="all settings as JSON (ServerConfig's fields)")
    args = parser.parse_args(argv)
    config = ServerConfig()
    if args.config:
        for key, value in json.loads(args.config).items():
            setattr(config, key, tuple(value) if isinstance(value, list) else value)
    for key in ("latency", "max_concurrency", "rpm", "tpm", "error_rate", "drop_rate", "slow_rate"):
        value = getattr(args, key)
        if value is not None:
            setattr(config, key, value)
    app = _App(config)

    def ready(port: int, server: asyncio.Server) -> None:
        print(f"listening on http://127.0.0.1:{port}", flush=True)  # the parent reads this

    with suppress(KeyboardInterrupt):
        asyncio.run(_serve(app, args.port, ready))


if __name__ == "__main__":
    main()
