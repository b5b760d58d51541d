"""`billing serve` against hostile callers (issue 15 finding 5): oversized heads and bodies,
deep JSON and slow requests get a JSON 4xx, never a 500, and are not read whole. On a real
uvicorn server on loopback (raw sockets), and through the test client for every route."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time

import pytest
from starlette.testclient import TestClient

from billing_pipelines.balances.state import balances_engine
from billing_pipelines.serve.app import serve_app
from billing_pipelines.serve.server import LINGER_SECONDS, RequestLimits, json_depth, server_config
from billing_pipelines.serve.tokens import create_gateway_key
from tests.balances_support import live_settings, running

LIMITS = RequestLimits(receive_seconds=0.5)
MB = 1024 * 1024
DECIDE = {"org_id": "acme", "model": "small-fast"}


@pytest.fixture
def settings(tmp_path):
    return live_settings(tmp_path)


@pytest.fixture
def key(settings):
    return create_gateway_key(balances_engine(settings.database_url), "gateway-1")[1]


@pytest.fixture
def port(settings):
    with running(server_config(serve_app(settings, LIMITS), "127.0.0.1", 0, LIMITS, log_level="critical")) as port:
        yield port


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    return sock


def head(path: str, key: str | None = None, **headers) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: billing"] + ([f"Authorization: Bearer {key}"] if key else [])
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(sock: socket.socket) -> tuple[int, dict, dict]:
    """Status, headers and JSON body of one response (read by its Content-Length)."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())


def sendable(sock: socket.socket, total: int) -> int:
    """Send up to `total` more bytes; how many went before the server closed the connection."""
    sent, chunk = 0, b"a" * (64 * 1024)
    try:
        while sent < total:
            sent += sock.send(chunk)
    except (BrokenPipeError, ConnectionResetError):
        return sent
    return sent


def test_a_64_mb_header_is_refused_after_the_head_limit(port):
    sock = connect(port)
    sock.sendall(b"POST /v1/ratelimit/decide HTTP/1.1\r\nHost: billing\r\nAuthorization: Bearer bgk_")
    sock.sendall(b"a" * (2 * LIMITS.max_head_bytes))
    status, headers, body = answer(sock)
    assert (status, headers["connection"]) == (431, "close") and "head is over 16384 bytes" in body["error"]
    sent = sendable(sock, 64 * MB)
    assert sent < 16 * MB, f"the server read on: {sent} more bytes of the 64 MB header were accepted"


def test_a_20_mb_body_is_refused_by_its_length_without_being_read(port, key):
    sock = connect(port)
    sock.sendall(head("/v1/ratelimit/decide", key, Content_Type="application/json", Content_Length=20 * MB))
    sock.sendall(b"[" * (64 * 1024))
    status, headers, body = answer(sock)
    assert (status, headers["connection"]) == (413, "close") and "at most 65536 bytes" in body["error"]
    assert sendable(sock, 20 * MB) < 16 * MB


def test_a_chunked_body_is_refused_once_over_the_limit(port, key):
    sock = connect(port)
    sock.sendall(head("/v1/ratelimit/decide", key, Transfer_Encoding="chunked"))
    sent = 0
    while not select.select([sock], [], [], 0.01)[0]:
        assert sent < 20 * MB, "no answer to a 20 MB chunked body"
        sock.sendall(b"4000\r\n" + b" " * 0x4000 + b"\r\n")
        sent += 0x4000
    status, _, body = answer(sock)
    assert status == 413 and "at most" in body["error"]
    assert sent < 2 * MB


def test_a_client_that_expects_100_continue_sends_no_body(port, key):
    sock = connect(port)
    sock.sendall(head("/v1/ratelimit/decide", key, Content_Length=20 * MB, Expect="100-continue"))
    status, _, _ = answer(sock)
    assert status == 413


@pytest.mark.parametrize(("depth", "status"), [(31, 200), (32, 400), (20_000, 400)])
def test_deeply_nested_json_is_400(port, key, depth, status):
    """The object is one level; `depth` arrays inside it. 20,000 levels overflow Python's parser."""
    nested = {**DECIDE, "trace": json.loads("[" * depth + "]" * depth) if depth < 100 else None}
    raw = json.dumps(nested).encode() if depth < 100 else b'{"trace": ' + b"[" * depth + b"]" * depth + b"}"
    sock = connect(port)
    sock.sendall(head("/v1/ratelimit/decide", key, Content_Length=len(raw)) + raw)
    code, _, body = answer(sock)
    assert code == status
    if status == 400:
        assert body["error"] == "the JSON body is nested deeper than 32 levels"


@pytest.mark.parametrize("sent", [b"", b"POST /v1/ratelimit/decide HTTP/1.1\r\nHost: billing\r\n"])
def test_a_head_that_does_not_arrive_in_time_is_408(port, sent):
    started = time.monotonic()  # before the server can start its clock
    sock = connect(port)
    sock.sendall(sent)
    status, _, body = answer(sock)
    waited = time.monotonic() - started
    assert status == 408 and "head did not arrive within 0.5 s" in body["error"]
    assert LIMITS.receive_seconds <= waited < LIMITS.receive_seconds + 1
    sock.settimeout(LINGER_SECONDS + 2)
    assert sock.recv(1) == b"", "the server closes the connection"


def test_a_body_that_does_not_arrive_in_time_is_408(port, key):
    sock = connect(port)
    started = time.monotonic()
    sock.sendall(head("/v1/ratelimit/decide", key, Content_Length=100) + b'{"org_id": ')
    status, headers, body = answer(sock)
    assert (status, headers["connection"]) == (408, "close") and "body did not arrive" in body["error"]
    assert LIMITS.receive_seconds <= time.monotonic() - started < LIMITS.receive_seconds + 1


def test_requests_within_the_limits_are_served_on_one_connection(port, key):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(3):
        conn.request("POST", "/v1/ratelimit/decide", json.dumps(DECIDE),
                     {"Authorization": f"Bearer {key}", "X-Padding": "p" * 8000})
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["outcome"] == "allow"
        time.sleep(LIMITS.receive_seconds + 0.1)  # idle between requests is not a slow head
    assert conn.sock is not None, "kept alive"


ROUTES = [("GET", "/"), ("GET", "/v1/balance"), ("GET", "/static/portal.css"), ("POST", "/v1/ratelimit/decide"),
          ("POST", "/v1/ratelimit/release"), ("GET", "/nowhere")]


@pytest.fixture
def client(settings):
    return TestClient(serve_app(settings, LIMITS))


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_is_under_the_limits(client, method, path):
    big_header = client.request(method, path, headers={"Authorization": "Bearer " + "a" * MB})
    assert big_header.status_code == 431 and "head" in big_header.json()["error"]
    big_body = client.request(method, path, content=b"{" * (20 * MB))
    assert big_body.status_code == 413 and "body" in big_body.json()["error"]
    deep = client.request(method, path, content=b"[" * 5000 + b"]" * 5000)
    assert deep.status_code == 400 and "nested deeper" in deep.json()["error"]
    not_json = client.request(method, path, content=b"\xff[" * 1000)
    assert not_json.status_code != 500


def test_json_depth():
    assert [json_depth(d) for d in (1, "x", [], {"a": []}, [[[{}]]], {"a": 1, "b": {"c": [2]}})] == [0, 0, 1, 2, 4, 3]
