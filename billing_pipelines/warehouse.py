"""Partitioned Parquet datasets under BILLING_HOME (or an S3 prefix), crash-safe and lock-free.

A partition is a folder `{dataset}/{partition}/` holding Parquet files named by their content hash
and a `_manifest.json` that names them. The manifest is written last and atomically: it is the
commit. Readers only follow manifests, so a run killed mid-write leaves nothing that anything reads,
and runs of different partitions never share a file, let alone a database lock.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from billing_pipelines.storage import Store

MANIFEST = "_manifest.json"


class Warehouse:
    """Datasets of Parquet partitions committed by manifest."""

    def __init__(self, root: str):
        self.store = Store(root)

    def manifest(self, dataset: str, partition: str) -> dict[str, Any] | None:
        key = f"{dataset}/{partition}/{MANIFEST}"
        try:
            return json.loads(self.store.read_bytes(key))
        except (FileNotFoundError, OSError):
            return None

    def partitions(self, dataset: str) -> list[str]:
        """Committed partitions of `dataset`, sorted."""
        return [p for p in self.store.list_dirs(dataset) if self.store.exists(f"{dataset}/{p}/{MANIFEST}")]

    def commit(
        self,
        dataset: str,
        partition: str,
        con: duckdb.DuckDBPyConnection,
        tables: dict[str, str],
        meta: dict[str, Any],
    ) -> dict[str, Any]:
        """Write each query of `tables` ({name: SQL}) as one Parquet file, then the manifest."""
        folder = f"{dataset}/{partition}"
        files = {}
        with tempfile.TemporaryDirectory(prefix="billing-commit-") as scratch:
            for name, query in tables.items():
                local = Path(scratch) / f"{name}.parquet"
                con.execute(
                    f"COPY ({query}) TO '{local}' (FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE 262144)"
                )
                digest = _file_sha256(local)
                files[name] = f"{name}-{digest[:20]}.parquet"
                self._put_file(local, f"{folder}/{files[name]}")
        manifest = {"files": files, "meta": meta}
        self.store.write_bytes(f"{folder}/{MANIFEST}", _canonical_json(manifest))
        self._sweep(folder, set(files.values()))
        return manifest

    def file_paths(self, dataset: str, name: str, partitions: list[str] | None = None) -> list[str]:
        """Filesystem paths (or s3:// URLs) of file `name` in the given (default: all) partitions."""
        paths = []
        for partition in self.partitions(dataset) if partitions is None else partitions:
            manifest = self.manifest(dataset, partition)
            if manifest and name in manifest["files"]:
                paths.append(self.store.url(f"{dataset}/{partition}/{manifest['files'][name]}"))
        return paths

    def relation(self, con: duckdb.DuckDBPyConnection, paths: list[str], columns: list[str] | None = None) -> str:
        """A FROM-clause source for DuckDB over Parquet files of this warehouse.

        Local files are read in place; S3 objects are read with pyarrow and handed to DuckDB as
        Arrow data (DuckDB's httpfs extension is not available offline)."""
        if not self.store.is_s3:
            return f"read_parquet({_sql_list(paths)}, hive_partitioning = false)" if paths else "(SELECT NULL WHERE FALSE)"
        table = pq.ParquetDataset(
            [p[len("s3://"):] for p in paths], filesystem=self.store.fs
        ).read(columns=columns) if paths else pa.table({})
        name = f"arrow_{hashlib.sha1(repr(paths).encode()).hexdigest()[:12]}"
        con.register(name, table)
        return name

    def _put_file(self, local: Path, key: str) -> None:
        if self.store.exists(key):
            return  # content-addressed: the same bytes are already there
        if self.store.is_s3:
            self.store.fs.create_dir(self.store.path(key.rsplit("/", 1)[0]))
            with open(local, "rb") as src, self.store.fs.open_output_stream(self.store.path(key), compression=None) as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
        else:
            target = Path(self.store.path(key))
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(local, temp)
            temp.replace(target)

    def _sweep(self, folder: str, keep: set[str]) -> None:
        """Delete data files of earlier versions of a partition."""
        for stored in self.store.list(folder, recursive=False):
            name = stored.key.rsplit("/", 1)[-1]
            if name.endswith(".parquet") and name not in keep:
                self.store.delete(stored.key)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, indent=1, default=str).encode() + b"\n"


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"
