"""One file API over a local folder or an `s3://bucket/prefix` URL (any S3-compatible store).

S3 settings come from the standard AWS variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`). Writes are atomic: a local file is written to a
temporary name and renamed; an S3 object becomes visible whole when its PUT completes.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import pyarrow.fs as pafs


@dataclass(frozen=True)
class StoredFile:
    key: str  # path relative to the store's root, '/'-separated
    size: int
    mtime_ns: int
    link: bool = False  # a symbolic link (local folders only), listed but never followed


def _s3_filesystem() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options = {"region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    if endpoint:
        parsed = urlparse(endpoint)
        options.update(endpoint_override=parsed.netloc or parsed.path, scheme=parsed.scheme or "https")
    return pafs.S3FileSystem(**options)


def is_temporary(name: str) -> bool:
    """A file a local write has not renamed yet (or never will: its writer died)."""
    return name.startswith(".") and name.endswith(".tmp")


class Store:
    """Files under one root: a local folder or an S3 prefix."""

    def __init__(self, root: str | os.PathLike):
        root = str(root)
        self.root = root.rstrip("/")
        self.is_s3 = root.startswith("s3://")
        if self.is_s3:
            self.fs = _s3_filesystem()
            self._base = self.root[len("s3://"):]
        else:
            self.fs = pafs.LocalFileSystem()
            self._base = str(Path(root).resolve())

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    def path(self, key: str) -> str:
        """The filesystem path of `key` (a local path, or bucket/key on S3)."""
        return f"{self._base}/{key}" if key else self._base

    def url(self, key: str) -> str:
        return f"s3://{self.path(key)}" if self.is_s3 else self.path(key)

    def list(self, prefix: str = "", recursive: bool = True) -> list[StoredFile]:
        """Files under `prefix`, sorted by key in byte order; [] where nothing is there. In a
        local folder, symbolic links are listed as links (`link`), whatever they point to, and
        never followed; other special files (pipes, sockets, devices) are not listed."""
        if self.is_s3:
            selector = pafs.FileSelector(self.path(prefix), recursive=recursive, allow_not_found=True)
            files = [StoredFile(info.path[len(self._base) + 1:], info.size, info.mtime_ns or 0)
                     for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File]
        else:
            files = list(_local_files(self._base, prefix.strip("/"), recursive))
        return sorted(files, key=lambda f: f.key.encode())

    def file(self, key: str) -> StoredFile | None:
        """The file `key` as list() reports it: in a local folder, a symbolic link at `key` or at a
        folder on its way is a link, not followed; None where there is no such file, or where
        `key` leaves the store (a `..`)."""
        if self.is_s3:
            info = self.fs.get_file_info(self.path(key))
            return StoredFile(key, info.size, info.mtime_ns or 0) if info.type == pafs.FileType.File else None
        names = key.split("/")
        if any(name in ("", ".", "..") for name in names):
            return None
        path = self._base
        for name in names:
            path = f"{path}/{name}"
            try:
                status = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if stat.S_ISLNK(status.st_mode):
                return StoredFile(key, status.st_size, status.st_mtime_ns, link=True)
        return StoredFile(key, status.st_size, status.st_mtime_ns) if stat.S_ISREG(status.st_mode) else None

    def list_dirs(self, prefix: str = "") -> list[str]:
        """Names of the folders directly under `prefix`."""
        selector = pafs.FileSelector(self.path(prefix), recursive=False, allow_not_found=True)
        return sorted(
            info.base_name for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.Directory
        )

    def exists(self, key: str) -> bool:
        return self.fs.get_file_info(self.path(key)).type == pafs.FileType.File

    def read_bytes(self, key: str) -> bytes:
        with self.fs.open_input_stream(self.path(key), compression=None) as stream:
            return stream.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write `data` to `key` atomically."""
        self._write(key, lambda out: out.write(data))

    def put_stream(self, key: str, source: BinaryIO) -> None:
        """Copy everything `source` yields to `key` atomically, in chunks."""
        self._write(key, lambda out: shutil.copyfileobj(source, out, 1 << 22))

    def staging_path(self, key: str, scratch: Path | None = None) -> Path:
        """Where to write a local file that `move_in` will then put at `key`: a temporary name
        beside `key` in a local folder (see `is_temporary`), so the move is a rename; a file in
        the local folder `scratch` for S3."""
        if self.is_s3:
            return scratch / f"{uuid.uuid4().hex}.tmp"
        target = Path(self.path(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")

    def move_in(self, key: str, staged: Path) -> None:
        """Put the file written at staging_path(key) at `key` atomically: flushed to disk and
        renamed locally; on S3 uploaded in one PUT (the staged file stays for its writer to delete)."""
        if self.is_s3:
            with open(staged, "rb") as source:
                self.put_stream(key, source)
            return
        with open(staged, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staged, self.path(key))

    def copy_from(self, source: Store, source_key: str, key: str) -> None:
        """Copy `source_key` of `source` to `key` atomically, without moving its bytes where the
        stores allow: a hard link between local folders of one filesystem, a server-side copy
        between S3 prefixes. Otherwise the bytes are streamed."""
        if self.is_s3 and source.is_s3:
            self.fs.copy_file(source.path(source_key), self.path(key))
        elif not self.is_s3 and not source.is_s3:
            self._write_local(key, lambda temp: _link_or_copy(source.path(source_key), temp))
        else:
            with source.fs.open_input_stream(source.path(source_key), compression=None) as stream:
                self.put_stream(key, stream)

    def _write(self, key: str, fill: Callable[[BinaryIO], object]) -> None:
        """S3: one PUT (an object appears whole or not at all). Local: a temporary name in the
        target folder, flushed to disk, then renamed, so a writer killed midway leaves at most a
        temporary file (see `is_temporary`) and never a partial file under the real name."""
        if self.is_s3:
            with self.fs.open_output_stream(self.path(key), compression=None) as stream:
                fill(stream)
            return
        self._write_local(key, lambda temp: _fill(temp, fill))

    def _write_local(self, key: str, make: Callable[[Path], object]) -> None:
        temp = self.staging_path(key)
        make(temp)
        self.move_in(key, temp)

    def delete(self, key: str) -> None:
        try:
            self.fs.delete_file(self.path(key))
        except FileNotFoundError:
            pass

    def delete_dir(self, prefix: str) -> None:
        try:
            self.fs.delete_dir(self.path(prefix))
        except FileNotFoundError:
            pass


def _local_files(base: str, prefix: str, recursive: bool) -> Iterator[StoredFile]:
    """The regular files and symbolic links under `base`/`prefix`, without following links."""
    try:
        entries = list(os.scandir(f"{base}/{prefix}" if prefix else base))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        key = f"{prefix}/{entry.name}" if prefix else entry.name
        if entry.is_symlink() or entry.is_file(follow_symlinks=False):
            try:
                status = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # renamed or deleted since the folder was read
            yield StoredFile(key, status.st_size, status.st_mtime_ns, link=entry.is_symlink())
        elif recursive and entry.is_dir(follow_symlinks=False):
            yield from _local_files(base, key, recursive)


def _link_or_copy(source: str, target: Path) -> None:
    """A hard link to `source` at `target`; a copy where the filesystem refuses (another device,
    protected links)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _fill(path: Path, fill: Callable[[BinaryIO], object]) -> None:
    with open(path, "wb") as handle:
        fill(handle)
