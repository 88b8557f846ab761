"""One fake LLM for every test: a real OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1.

Each request takes the next scripted reply ``(status, body, delay_s)`` (the last one repeats). A body
may be a function of the request body, e.g. :func:`cite_first_passage`, for replies that depend on
the prompt.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, object, float]


@dataclass
class FakeLLM:
    script: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)  # {"path", "body"} per request
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""  # OpenAI-style base URL (…/v1) once serving

    def next_reply(self) -> Reply:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


def chat_reply(content: object, model: str = "served-model") -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
    }


def cite_first_passage(model: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A reply citing the prompt's first numbered passage, plus an invented article id to be stripped."""

    def reply(request: dict[str, Any]) -> dict[str, Any]:
        prompt = request["messages"][-1]["content"]
        cited = next((line.split()[1] for line in prompt.splitlines() if line.startswith("[1] ")), None)
        if cited is None:
            raise AssertionError("prompt has no numbered passages: " + json.dumps(prompt[:200]))
        content = f"Hello,\n\n1. Follow the steps in the knowledge base [{cited}].\n2. Invented step [kb-made-up-999].\n"
        return chat_reply(content, model)

    return reply


@contextmanager
def serve_fake_llm() -> Iterator[FakeLLM]:
    state = FakeLLM()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length))
            state.requests.append({"path": self.path, "body": request})
            state.headers.append(dict(self.headers))
            status, body, delay = state.next_reply()
            time.sleep(delay)
            if callable(body):
                body = body(request)
            payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
