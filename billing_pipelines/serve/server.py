"""What every HTTP route of `billing serve` gets, whoever wrote it: bounds on each request and
the bearer credential it carries.

`RequestLimits`: the head (request line and headers) at most `max_head_bytes` (431), the body at
most `max_body_bytes` (413), a JSON body nested at most `max_json_depth` deep (400), the head
within `receive_seconds` of the connection opening or of its first byte, and the body within
`receive_seconds` after the head (408). Every refusal is a JSON ``{"error": ...}``, never a 500.

Two parts enforce them: `LimitedRequests`, an ASGI middleware over the whole app (it reads the
body, up to its limit, before the app runs; it also checks the head a server already parsed),
and `LimitedHttpProtocol`, the uvicorn protocol `billing serve` runs, which bounds the head
while it arrives (a 64 MB header is refused after `max_head_bytes` and a socket read or two,
where a plain server buffers all of it before any app sees the request) and the time it takes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from functools import partial

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


@dataclass(frozen=True)
class RequestLimits:
    max_head_bytes: int = 16 * 1024  # as h11 and Node.js
    max_body_bytes: int = 64 * 1024  # an admission decision is ~100 bytes
    max_json_depth: int = 32
    receive_seconds: float = 10.0


class Refused(Exception):
    """A request over a limit: its status and the message of its JSON error."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

    def response(self) -> JSONResponse:
        """Its JSON error; the rest of the request is not read, so the connection is closed."""
        return JSONResponse({"error": str(self)}, self.status, headers={"connection": "close"})


class LimitedRequests:
    """ASGI middleware: the limits on every HTTP request, then the app with the body read."""

    def __init__(self, app, limits: RequestLimits = RequestLimits()):
        self.app = app
        self.limits = limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            body = await self._body(scope, receive)
        except ClientDisconnect:
            return None
        except Refused as refusal:
            return await refusal.response()(scope, receive, send)
        return await self.app(scope, _replay(body, receive), send)

    async def _body(self, scope, receive) -> bytes:
        limits = self.limits
        if head_bytes(scope) > limits.max_head_bytes:
            raise Refused(431, f"the request head is over {limits.max_head_bytes} bytes")
        declared = Request(scope).headers.get("content-length", "0")
        if not declared.isdigit():
            raise Refused(400, "Content-Length must be a number of bytes")
        if int(declared) > limits.max_body_bytes:
            raise _too_large(limits.max_body_bytes)
        try:  # asyncio's own timeout: anyio's cancel scope costs ~100 µs a request
            async with asyncio.timeout(limits.receive_seconds):
                body = await _read_body(receive, limits.max_body_bytes)
        except TimeoutError:
            raise Refused(408, f"the request body did not arrive within {limits.receive_seconds:g} s") from None
        check_json_depth(body, limits.max_json_depth)
        return body


def head_bytes(scope) -> int:
    """The size of a parsed request head (request line and header lines), to a few bytes."""
    line = len(scope["method"]) + len(scope.get("raw_path") or scope["path"]) + len(scope["query_string"]) + 12
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


async def _read_body(receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body += message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return bytes(body)


def _too_large(limit: int) -> Refused:
    return Refused(413, f"the body must be at most {limit} bytes")


def _replay(body: bytes, receive):
    """The receive channel of the app: the body read, then the client's (disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay():
        return pending.pop() if pending else await receive()

    return replay


def check_json_depth(body: bytes, max_depth: int) -> None:
    """Refuse a body that is JSON nested deeper than `max_depth` (whatever its Content-Type, as
    routes parse their body as JSON whatever it says); a body that is not JSON passes."""
    try:
        depth = json_depth(json.loads(body)) if body else 0
    except RecursionError:  # deeper than the parser's own recursion limit
        depth = max_depth + 1
    except ValueError:
        return
    if depth > max_depth:
        raise Refused(400, f"the JSON body is nested deeper than {max_depth} levels")


def json_depth(document) -> int:
    """Levels of arrays and objects: 0 for a scalar, 1 for ``[1]``, 2 for ``{"a": []}``."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def bearer_token(request: Request) -> str | None:
    """The credential of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


LINGER_SECONDS = 1.0


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head limits of `RequestLimits`, while it arrives.

    The head may take at most `max_head_bytes`, counted by socket read (up to 256 KiB) once a
    read ends inside it (a read that also starts the head is not counted, so a head may reach
    the limit plus two reads), and `receive_seconds` from the connection opening or its first
    byte; else a JSON 431 or 408 is written, nothing more is read, and the connection is closed.
    Run it as ``uvicorn --http billing_pipelines.serve.server:LimitedHttpProtocol`` or through `server_config`.
    """

    def __init__(self, *args, limits: RequestLimits = RequestLimits(), **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._heads = 0  # heads begun on this connection
        self._head_bytes: int | None = None  # read of the head in progress; None between heads
        self._head_timer = None
        self._refused = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_begins()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        head = self._heads if self._head_bytes is not None else None
        super().data_received(data)
        if head == self._heads and self._head_bytes is not None:  # the same head, still arriving
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse(Refused(431, f"the request head is over {self.limits.max_head_bytes} bytes"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_bytes is None:
            self._head_begins()

    def on_headers_complete(self) -> None:
        self._head_ends()
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:
        self._head_ends()
        super().connection_lost(exc)

    def _head_begins(self) -> None:
        self._heads += 1
        self._head_bytes = 0
        seconds = self.limits.receive_seconds
        late = Refused(408, f"the request head did not arrive within {seconds:g} s")
        self._head_timer = self.loop.call_later(seconds, self._refuse, late)

    def _head_ends(self) -> None:
        self._head_bytes = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, refusal: Refused) -> None:
        """Answer `refusal`, read nothing more, and close after LINGER_SECONDS: closing at once,
        with the client's bytes unread, would reset the connection and could lose the answer."""
        self._head_ends()
        self._refused = True
        if self.transport.is_closing():
            return
        self.transport.pause_reading()
        response = refusal.response()
        headers = [*self.server_state.default_headers, *response.raw_headers]
        self.transport.write(STATUS_LINE[refusal.status] + b"".join(n + b": " + v + b"\r\n" for n, v in headers)
                             + b"\r\n" + response.body)
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def server_config(app, host: str, port: int, limits: RequestLimits = RequestLimits(), **options):
    """The uvicorn config of `billing serve`: `app` (already wrapped in `LimitedRequests`) on
    the protocol that bounds the head."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http=partial(LimitedHttpProtocol, limits=limits), **options)
