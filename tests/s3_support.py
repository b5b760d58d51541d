"""A real S3 API for tests: moto's server in a subprocess on 127.0.0.1, on a free port.

`moto_s3` yields the endpoint URL; `s3_env` points the AWS variables the storage layer reads at it
(and a fresh bucket per test). Where moto is not installed the tests skip (fail when CI=true).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.request import urlopen

import pytest

from tests.common import require_service

BUCKET_ENV = {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(endpoint: str, server: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"moto server exited with {server.returncode}")
        try:
            urlopen(endpoint + "/moto-api/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server not answering on {endpoint}")


@pytest.fixture(scope="session")
def moto_s3():
    """The endpoint of a moto S3 server that lives for the test session."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        require_service("moto S3 server", f"moto[server] and boto3 are not installed ({exc})")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        try:
            _wait_until_up(endpoint, server)
        except RuntimeError as exc:
            require_service("moto S3 server", str(exc))
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def s3_env(moto_s3, monkeypatch) -> str:
    """Point the AWS variables at moto and create a fresh bucket; returns its name."""
    for name, value in {**BUCKET_ENV, "AWS_ENDPOINT_URL": moto_s3}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    bucket = f"billing-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=bucket)
    return bucket


def s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])


def upload_folder(folder: Path, bucket: str, prefix: str) -> int:
    """Upload every file under `folder` to s3://bucket/prefix/, keeping relative paths."""
    client = s3_client()
    files = [f for f in sorted(folder.rglob("*")) if f.is_file()]
    for f in files:
        client.upload_file(str(f), bucket, f"{prefix}/{f.relative_to(folder).as_posix()}")
    return len(files)
