"""A scripted OpenAI-compatible chat server on the loopback interface, for testing HTTP clients.

Each request names its item in the last message ("... item 7 ..."); the script says, per item, how
the server answers that item's first, second, ... request, so a test can inject rate limits, server
errors, timeouts and malformed answers where it wants them and check what the client did. The server
records every request and the most requests it ever had in flight at once.
"""

from __future__ import annotations

import email.utils
import json
import re
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# How the server can answer one request.
OK = "ok"
RATE_LIMITED = "429"  # with Retry-After in seconds (`retry_after`)
UNAVAILABLE_UNTIL = "503-date"  # with Retry-After as an HTTP date `retry_after` seconds ahead
SERVER_ERROR = "500"
BAD_REQUEST = "400"
HANG = "hang"  # answers only after `hang` seconds, by when the client should have timed out
MALFORMED_JSON = "malformed"
NO_CONTENT = "no-content"  # valid JSON without choices[0].message.content

ITEM = re.compile(r"item (\d+)")


def answer(item: int) -> str:
    """The text the server answers `item` with."""
    return f"answer {item}"


class ChatServer:
    """Answers POST /v1/chat/completions as scripted; see the module docstring."""

    def __init__(
        self, script: dict[int, list[str]], *, retry_after: float = 3.0, hang: float = 1.0, work: float = 0.02
    ) -> None:
        self.script = script
        self.retry_after = retry_after
        self.hang = hang
        self.work = work
        self.requests: list[dict[str, Any]] = []
        self.counts: Counter[int] = Counter()
        self.max_in_flight = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def _enter(self, connection: socket.socket) -> None:
        """Counts in flight only requests whose client still waits: a client that timed out has hung up."""
        with self._lock:
            self._open = {other for other in self._open if not _peer_closed(other)}
            self._open.add(connection)
            self.max_in_flight = max(self.max_in_flight, len(self._open))

    def _leave(self, connection: socket.socket) -> None:
        with self._lock:
            self._open.discard(connection)

    def _behaviour(self, item: int) -> str:
        with self._lock:
            self.counts[item] += 1
            attempt = self.counts[item]
        plan = self.script.get(item, [])
        return plan[attempt - 1] if attempt <= len(plan) else OK

    def reply(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        item = int(ITEM.search(body["messages"][-1]["content"]).group(1))
        with self._lock:
            self.requests.append({"item": item, "body": body, "headers": dict(handler.headers)})
        behaviour = self._behaviour(item)
        time.sleep(self.work)
        if behaviour == HANG:
            _wait_for_hangup(handler.connection, self.hang)
            behaviour = OK
        if behaviour == RATE_LIMITED:
            _send(handler, 429, {"error": {"message": "slow down"}}, {"Retry-After": f"{self.retry_after:g}"})
        elif behaviour == UNAVAILABLE_UNTIL:
            date = email.utils.formatdate(time.time() + self.retry_after, usegmt=True)
            _send(handler, 503, {"error": {"message": "overloaded"}}, {"Retry-After": date})
        elif behaviour == SERVER_ERROR:
            _send(handler, 500, {"error": {"message": f"internal error on item {item}"}})
        elif behaviour == BAD_REQUEST:
            _send(handler, 400, {"error": {"message": f"bad request for item {item}"}})
        elif behaviour == MALFORMED_JSON:
            _send_raw(handler, 200, b'{"choices": [')
        elif behaviour == NO_CONTENT:
            _send(handler, 200, {"choices": [{"message": {"role": "assistant"}, "finish_reason": "stop"}]})
        else:
            _send(handler, 200, _completion(item, body))

    @contextmanager
    def running(self, lifetime: float = 60.0) -> Iterator[str]:
        """Serves on 127.0.0.1 at a free port and yields the base URL; stops on exit or after `lifetime` seconds."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        watchdog = threading.Timer(lifetime, server.shutdown)
        watchdog.daemon = True
        watchdog.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/v1"
        finally:
            watchdog.cancel()
            server.shutdown()
            server.server_close()
            thread.join()


def _completion(item: int, body: dict[str, Any]) -> dict[str, Any]:
    text = answer(item)
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if body.get("logprobs"):
        k = body["top_logprobs"]
        # k + 1 candidates, as servers do when the sampled token is not among the top k.
        choice["logprobs"] = {
            "content": [
                {
                    "token": word,
                    "logprob": -0.1,
                    "top_logprobs": [{"token": f"{word}{rank}", "logprob": -0.1 - rank} for rank in range(k + 1)],
                }
                for word in text.split()
            ]
        }
    usage = {"prompt_tokens": 10 + item, "completion_tokens": len(text.split()), "total_tokens": 0}
    return {"id": f"chat-{item}", "object": "chat.completion", "choices": [choice], "usage": usage}


def _send(handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    _send_raw(handler, status, json.dumps(payload).encode("utf-8"), headers)


def _send_raw(handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:  # the client already hung up (it timed out)
        pass


def _peer_closed(connection: socket.socket) -> bool:
    """True once the client closed its end: the request was fully read, so a readable socket means end of stream."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _wait_for_hangup(connection: socket.socket, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not _peer_closed(connection):
        time.sleep(0.01)


def _handler_class(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
            if self.path != "/v1/chat/completions":
                _send(self, 404, {"error": {"message": f"no route {self.path}"}})
                return
            server._enter(self.connection)
            try:
                server.reply(self)
            finally:
                server._leave(self.connection)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the signature http.server calls
            """Quiet: the test reads the server's records, not its log."""

    return Handler
