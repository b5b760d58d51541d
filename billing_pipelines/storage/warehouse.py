"""Partitioned Parquet datasets under BILLING_HOME (or an S3 prefix), crash-safe and lock-free.

A partition is a folder `{dataset}/{partition}/` holding Parquet files named by their content hash
and a `_manifest.json` that names them. The manifest is written last and atomically: it is the
commit. Readers only follow manifests, so a run killed mid-write leaves nothing that anything reads,
and runs of different partitions never share a file, let alone a database lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from billing_pipelines.storage import duck
from billing_pipelines.storage.objects import Store, StoredFile, is_temporary

MANIFEST = "_manifest.json"
# Dictionaries only for columns of few distinct values: trying one for a column of unique values
# (hashes, line numbers, costs) took a third of the time of writing the priced events.
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE 262144, DICTIONARY_SIZE_LIMIT 4096"
# A temporary file this old was left by a writer that died: no live write takes an hour.
STALE_TEMPORARY_SECONDS = 3600


class WarehouseError(RuntimeError):
    """A stored file that no longer is what its manifest committed."""


class Warehouse:
    """Datasets of Parquet partitions committed by manifest."""

    def __init__(self, root: str, cache_dir: Path | None = None):
        """`cache_dir`: where S3 data files are copied to be read (default: in the temp folder)."""
        self.store = Store(root)
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "billing-warehouse-cache"
        self._manifests: dict[str, dict[str, Any]] = {}

    def manifest(self, dataset: str, partition: str) -> dict[str, Any] | None:
        """The committed manifest, read once per Warehouse object (one run): on S3 every read is a
        request, and billing a date looks at every earlier date's manifest. A missing manifest is
        not remembered, since a concurrent run may commit it."""
        key = f"{dataset}/{partition}/{MANIFEST}"
        if key not in self._manifests:
            try:
                self._manifests[key] = json.loads(self.store.read_bytes(key))
            except (FileNotFoundError, OSError):
                return None
        return self._manifests[key]

    def partitions(self, dataset: str) -> list[str]:
        """Committed partitions of `dataset`, sorted."""
        return [p for p in self.store.list_dirs(dataset) if self.store.exists(f"{dataset}/{p}/{MANIFEST}")]

    def commit(
        self,
        dataset: str,
        partition: str,
        con: duckdb.DuckDBPyConnection | None,
        tables: dict[str, str],
        meta: dict[str, Any],
        copies: dict[str, tuple[Store, StoredFile]] | None = None,
        arrays: dict[str, np.ndarray] | None = None,
    ) -> dict[str, Any]:
        """Write each query of `tables` ({name: SQL}) as one Parquet file and each numpy array of
        `arrays` as one memory-mappable `.npy` file, copy each Parquet file of `copies` ({name:
        (store, file)}, see Store.copy_from), then write the manifest. For a copy that is a hard
        link, the manifest also records the size and modification time the landed file had when
        it was listed, which copy_path checks."""
        folder = f"{dataset}/{partition}"
        files, stamps = {}, {}
        with tempfile.TemporaryDirectory(prefix="billing-commit-") as scratch:
            for name, array in (arrays or {}).items():
                files[name] = self._put_array(array, folder, name, Path(scratch))
            for name, query in tables.items():
                staged = self.store.staging_path(f"{folder}/{name}.parquet", Path(scratch))
                try:
                    con.execute(f"COPY ({query}) TO {duck.literal(staged)} ({PARQUET_OPTIONS})")
                    files[name] = self._put_file(staged, folder, name)
                finally:
                    staged.unlink(missing_ok=True)  # moved in, or left by a failed write
            for name, (source, landed) in (copies or {}).items():
                files[name] = self._copy_file(source, landed, folder, name)
                if not (self.store.is_s3 or source.is_s3) and os.path.samefile(
                        self.store.path(f"{folder}/{files[name]}"), source.path(landed.key)):
                    stamps[name] = [landed.size, landed.mtime_ns]
        return self._write_manifest(folder, {"files": files, "meta": meta, **({"copies": stamps} if stamps else {})})

    def commit_arrays(self, dataset: str, partition: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict:
        """Write each numpy array of `arrays` as one `.npy` file, then the manifest."""
        return self.commit(dataset, partition, None, {}, meta, arrays=arrays)

    def recommit(self, dataset: str, partition: str, files: dict[str, str], meta: dict[str, Any]) -> dict:
        """A new manifest naming some of the partition's committed files (the others are swept)."""
        return self._write_manifest(f"{dataset}/{partition}", {"files": files, "meta": meta})

    def drop(self, dataset: str, partition: str) -> None:
        """Withdraw a partition: its manifest first (readers see nothing), then its files."""
        folder = f"{dataset}/{partition}"
        self.store.delete(f"{folder}/{MANIFEST}")
        self._manifests.pop(f"{folder}/{MANIFEST}", None)
        self._sweep(folder, set())

    def _write_manifest(self, folder: str, manifest: dict[str, Any]) -> dict[str, Any]:
        self.store.write_bytes(f"{folder}/{MANIFEST}", _canonical_json(manifest))
        self._manifests[f"{folder}/{MANIFEST}"] = json.loads(_canonical_json(manifest))
        self._sweep(folder, set(manifest["files"].values()))
        return manifest

    def file_paths(self, dataset: str, name: str, partitions: list[str] | None = None) -> list[str]:
        """Filesystem paths (or s3:// URLs) of file `name` in the given (default: all) partitions."""
        paths = []
        for partition in self.partitions(dataset) if partitions is None else partitions:
            manifest = self.manifest(dataset, partition)
            if manifest and name in manifest["files"]:
                paths.append(self.store.url(f"{dataset}/{partition}/{manifest['files'][name]}"))
        return paths

    def copy_path(self, dataset: str, partition: str, name: str) -> str:
        """Local path of the copy `name` that commit made of a landed file. A hard link follows
        its landed file: WarehouseError where it no longer has the size and modification time the
        landed file was priced with (the landed file was rewritten in place)."""
        [path] = self.local_paths(self.file_paths(dataset, name, [partition]))
        committed = self.manifest(dataset, partition).get("copies", {}).get(name)
        if committed is not None and _stamp(path) != committed:
            raise WarehouseError(f"{dataset}/{partition}/{name}: changed since it was committed")
        return path

    def relation(self, con: duckdb.DuckDBPyConnection, paths: list[str]) -> str:
        """A FROM-clause source for DuckDB over Parquet files of this warehouse.

        Local files are read in place. S3 objects are copied once into the local cache and read
        from there the same way (DuckDB's httpfs extension is not available offline), so both
        give the same types, nullability included, and so the same bytes downstream."""
        if not paths:
            return "(SELECT NULL WHERE FALSE)"
        return f"read_parquet({duck.literal_list(self.local_paths(paths))}, hive_partitioning = false)"

    def local_paths(self, paths: list[str]) -> list[str]:
        """Local paths DuckDB can read for data files of this warehouse (see `relation`)."""
        return [self._cached_copy(p) for p in paths] if self.store.is_s3 else paths

    def _cached_copy(self, url: str) -> str:
        """The local copy of an S3 data file. Data files are named by their content, so a copy
        never goes stale; it is written to a temporary name and renamed, so concurrent runs and a
        killed download never leave a partial copy under the real name."""
        key = url[len("s3://"):]
        cache = Store(self.cache_dir)
        if not cache.exists(key):
            with self.store.fs.open_input_stream(key, compression=None) as source:
                cache.put_stream(key, source)
        return cache.path(key)

    def _put_array(self, array: np.ndarray, folder: str, name: str, scratch: Path) -> str:
        staged = self.store.staging_path(f"{folder}/{name}.npy", scratch)
        try:
            with open(staged, "wb") as handle:
                np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
            return self._put_file(staged, folder, name, ".npy")
        finally:
            staged.unlink(missing_ok=True)

    def _put_file(self, staged: Path, folder: str, name: str, suffix: str = ".parquet") -> str:
        """Move `staged` into `folder` under a name made of `name` and its content hash."""
        stored = f"{name}-{_file_sha256(staged)[:20]}{suffix}"
        if not self.store.exists(f"{folder}/{stored}"):  # content-addressed: else the same bytes are there
            self.store.move_in(f"{folder}/{stored}", staged)
        return stored

    def _copy_file(self, source: Store, landed: StoredFile, folder: str, name: str) -> str:
        """Copy `landed` into `folder` under a name made of `name` and the file's identity (its
        URL, size and modification time: what the stage fingerprint already trusts)."""
        identity = hashlib.sha256(f"{source.url(landed.key)}\0{landed.size}\0{landed.mtime_ns}".encode())
        stored = f"{name}-{identity.hexdigest()[:20]}.parquet"
        if not self.store.exists(f"{folder}/{stored}"):
            self.store.copy_from(source, landed.key, f"{folder}/{stored}")
        return stored

    def _sweep(self, folder: str, keep: set[str]) -> None:
        """Delete data files of earlier versions of a partition, and temporary files of writers
        that died (older than STALE_TEMPORARY_SECONDS, so a live concurrent writer keeps its own)."""
        stale = time.time_ns() - STALE_TEMPORARY_SECONDS * 10**9
        for stored in self.store.list(folder, recursive=False):
            name = stored.key.rsplit("/", 1)[-1]
            if ((name.endswith((".parquet", ".npy")) and name not in keep)
                    or (is_temporary(name) and stored.mtime_ns < stale)):
                self.store.delete(stored.key)


def manifest_version(manifest: dict[str, Any]) -> str:
    """The version of a committed partition: a digest of its manifest (its files are named by
    their content, so equal versions hold equal data)."""
    return hashlib.sha256(_canonical_json(manifest)).hexdigest()[:24]


def _stamp(path: str) -> list[int]:
    """A local file's size and modification time (ns)."""
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, indent=1, default=str).encode() + b"\n"
