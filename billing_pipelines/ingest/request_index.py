"""The request index: the request_ids every landing date saw first, so that a date finds its
cross-day duplicates (SPEC §1.3) by probing what landed before it, at a cost that does not grow
with the length of history.

A *run* holds 128-bit request hashes (h1, h2) sorted by h1, the landing day of each, and a
blocked Bloom filter (one 64-bit word a hash, 8 bits set, 16 bits a hash: about 0.3 % false
positives). There is a run per landing date (its first occurrences, from its priced events), and
once later dates need them, one per landing month compacted from its date runs and one per
landing year from its month runs. Checking ids against a run gathers one filter word per id (the
ids sorted by h1 walk the filter in order) and confirms the few candidates by binary search, first
in the run's fence (the h1 of every FENCE_STRIDE-th entry, small and contiguous), then within one
page of its memory-mapped keys (a run written before fences existed is searched whole).

A date probes one run per earlier year, the earlier months of its year through their *union
filter* (sized for YEAR_SPAN times the largest of them, so that it stays one size all year, at
half the bits of a run's), and the earlier dates of its month through theirs (sized for MONTH_SPAN
times the largest date): every id passes a union once, and only its candidates are looked up in
the union's runs (their filters, then their keys). A union is stored with the filter files of the
runs it holds and extended by the run it lacks (its keys hashed into a copy): the year's on the
first date of a month by the month before, the month's on each date by the date before.

Every run is a pure function of the landed files and the config, so the index is the same
whatever order dates are billed in. It changes only under `index_lock` (billing a date); a change
of a date's run invalidates the month and year runs that hold it (rebuilt from their children
when next needed), and a union whose runs changed is rebuilt. Readers need no lock: a compacted
run that is missing is read as its children, a union that does not match as its runs.
"""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text

from billing_pipelines.storage.warehouse import Warehouse

DATASET = "request_index"
KEYS = np.dtype([("h1", "<u8"), ("h2", "<u8")])
BITS_PER_KEY = 16
_EPOCH = date(1970, 1, 1)
CHUNK = 1 << 22  # hashes held in memory at a time (4 M: 64 MB), whatever the size of a run
FENCE_STRIDE = 256  # keys between fence entries: 4 KB, one page of KEYS
YEAR_SPAN = 12  # a year's union filter is sized for 12 times its largest month,
MONTH_SPAN = 31  # a month's for 31 times its largest date,
UNION_BITS_PER_KEY = 8  # at 8 bits a hash (a few % false positives, which the runs' filters stop)
_LOCK_SPACE = 4_240_002  # PostgreSQL advisory lock key of the index (see billing_db for 4_240_001)


def day_number(day: date) -> int:
    return (day - _EPOCH).days


def day_of(number: int) -> date:
    return _EPOCH + timedelta(days=int(number))


def sort_keys(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """Hashes as KEYS sorted by h1 (ties keep their order: runs are deterministic)."""
    keys = np.empty(len(h1), KEYS)
    keys["h1"], keys["h2"] = h1, h2
    return keys[np.argsort(keys["h1"], kind="stable")]


def filter_words(count: int, bits_per_key: int = BITS_PER_KEY) -> int:
    """log2 of the filter's 64-bit words for `count` hashes (a pure function of the count)."""
    return max(6, int(np.ceil(np.log2(max(count, 1) * bits_per_key / 64))))


def hash_masks(h2: np.ndarray) -> np.ndarray:
    """The 8 filter bits of each hash, from 48 bits of h2."""
    masks = np.zeros(len(h2), np.uint64)
    for i in range(8):
        masks |= np.uint64(1) << ((h2 >> np.uint64(6 * i)) & np.uint64(63))
    return masks


def build_filter(keys: np.ndarray, log_words: int) -> np.ndarray:
    """The Bloom filter of `keys` (sorted by h1), `2**log_words` words."""
    words = np.zeros(1 << log_words, np.uint64)
    add_to_filter(words, keys)
    return words


def add_to_filter(words: np.ndarray, keys: np.ndarray) -> None:
    """Set the bits of `keys` (sorted by h1) in the filter `words`, a chunk at a time."""
    log_words = int(np.log2(len(words)))
    for chunk in chunks(keys):
        _fill_filter(words, chunk, log_words)


def chunks(keys: np.ndarray) -> Iterator[np.ndarray]:
    """`keys` in consecutive slices of up to CHUNK (memory-mapped keys stay on disk but one)."""
    for start in range(0, len(keys), CHUNK):
        yield np.asarray(keys[start:start + CHUNK])


def _fill_filter(words: np.ndarray, keys: np.ndarray, log_words: int) -> None:
    if not len(keys):
        return
    slot = keys["h1"] >> np.uint64(64 - log_words)  # sorted, since keys are
    starts = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
    words[slot[starts].astype(np.int64)] |= np.bitwise_or.reduceat(hash_masks(keys["h2"]), starts)


def fence_of(keys: np.ndarray) -> np.ndarray:
    """The h1 of every FENCE_STRIDE-th key of a run (sorted by h1), as a contiguous array."""
    return np.ascontiguousarray(keys["h1"][::FENCE_STRIDE])


def search_h1(keys: np.ndarray, fence: np.ndarray | None, values: np.ndarray, side: str) -> np.ndarray:
    """np.searchsorted(keys["h1"], values, side), touching one page of `keys` per value where the
    run has its `fence`: the fence bounds each value to FENCE_STRIDE keys, searched by halving."""
    if fence is None:
        return np.searchsorted(keys["h1"], values, side)
    block = np.searchsorted(fence, values, side).astype(np.int64)
    lo = np.maximum(block - 1, 0) * FENCE_STRIDE
    hi = np.minimum(block * FENCE_STRIDE, len(keys))
    column, last = keys["h1"], max(len(keys) - 1, 0)
    while (active := lo < hi).any():
        mid = (lo + hi) >> 1
        seen = column[np.minimum(mid, last)]
        right = active & ((seen < values) if side == "left" else (seen <= values))
        lo, hi = np.where(right, mid + 1, lo), np.where(active & ~right, mid, hi)
    return lo


@dataclass(frozen=True)
class Probe:
    """Hashes to look up, sorted by h1, with their filter bits computed once for every run."""

    keys: np.ndarray

    @classmethod
    def of(cls, keys: np.ndarray) -> Probe:
        return cls(keys if _sorted(keys) else keys[np.argsort(keys["h1"], kind="stable")])

    @cached_property
    def masks(self) -> np.ndarray:
        return hash_masks(self.keys["h2"])

    @cached_property
    def _slots(self) -> dict[int, np.ndarray]:
        return {}

    def slots(self, log_words: int) -> np.ndarray:
        """Each hash's word in a filter of 2**log_words words (computed once a size: most runs share one)."""
        if log_words not in self._slots:
            self._slots[log_words] = (self.keys["h1"] >> np.uint64(64 - log_words)).astype(np.int64)
        return self._slots[log_words]


def _sorted(keys: np.ndarray) -> bool:
    return len(keys) < 2 or bool(np.all(keys["h1"][1:] >= keys["h1"][:-1]))


@dataclass(frozen=True)
class Run:
    """One stored run: its partition name and arrays (memory-mapped); `fence` None in a run
    written before fences."""

    name: str
    keys: np.ndarray
    days: np.ndarray
    words: np.ndarray
    fence: np.ndarray | None = None

    def lookup(self, probe: Probe) -> tuple[np.ndarray, np.ndarray]:
        """(positions in probe, landing day numbers) of the probe's hashes found in this run, each
        at the earliest day it has; the filter leaves only a few candidates to confirm."""
        if not len(self.keys) or not len(probe.keys):
            return _nothing()
        return self._confirm(probe.keys, candidates(self.words, probe))

    def _confirm(self, wanted: np.ndarray, maybe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The positions of `maybe` in `wanted` whose hash the run holds, with the earliest day."""
        h1 = wanted["h1"][maybe]
        left = search_h1(self.keys, self.fence, h1, "left")
        right = search_h1(self.keys, self.fence, h1, "right")
        return _matches(self.keys, self.days, wanted, maybe, left, right)


def candidates(words: np.ndarray, probe: Probe) -> np.ndarray:
    """The positions in `probe` of the hashes whose 8 bits the filter `words` has set."""
    bits = words[probe.slots(int(np.log2(len(words))))]
    np.bitwise_and(bits, probe.masks, out=bits)
    return np.flatnonzero(bits == probe.masks)


@dataclass(frozen=True)
class Group:
    """Runs probed through one union filter of theirs: each hash passes the union once, and only
    its candidates are looked up in the runs."""

    words: np.ndarray
    runs: list[Run]

    def lookup(self, probe: Probe) -> tuple[np.ndarray, np.ndarray]:
        """As Run.lookup, for every run of the group (a position may come once a run)."""
        maybe = candidates(self.words, probe)
        narrowed = Probe(probe.keys[maybe])
        found = [run.lookup(narrowed) for run in self.runs]
        return (np.concatenate([maybe[positions] for positions, _ in found]),
                np.concatenate([days for _, days in found]))


def _nothing() -> tuple[np.ndarray, np.ndarray]:
    return np.empty(0, np.int64), np.empty(0, np.int32)


def _matches(keys: np.ndarray, days: np.ndarray, wanted: np.ndarray, maybe: np.ndarray,
             left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of the candidates `maybe`, whose h1 is at keys[left:right], those whose h2 matches too."""
    counts = right - left
    owner = np.repeat(np.arange(len(maybe)), counts)
    where = np.repeat(left, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    same = keys["h2"][where] == wanted["h2"][maybe][owner]
    owner, first_day = owner[same], days[where[same]]
    if not len(owner):
        return _nothing()
    order = np.lexsort((first_day, owner))
    owner, first_day = owner[order], first_day[order]
    keep = np.r_[True, owner[1:] != owner[:-1]]
    return maybe[owner[keep]], first_day[keep].astype(np.int32)


class RequestIndex:
    """The runs stored in a warehouse under DATASET: date runs `dt=YYYY-MM-DD`, month runs
    `month=YYYY-MM`, year runs `year=YYYY`; union filters `union=YYYY+01-MM` of a year's first months
    and `union=YYYY-MM+01-DD` of a month's first dates."""

    def __init__(self, warehouse: Warehouse):
        self.wh = warehouse
        self.names = set(warehouse.partitions(DATASET))

    # -- reading
    def run(self, name: str) -> Run:
        manifest = self.wh.manifest(DATASET, name)
        arrays = {n: self._array(name, n) for n in ("keys", "days", "filter", "fence") if n in manifest["files"]}
        if manifest["meta"]["level"] == "date":  # a date run's entries are all of its own day
            arrays["days"] = np.broadcast_to(np.int32(manifest["meta"]["day"]), len(arrays["keys"]))
        return Run(name, arrays["keys"], arrays["days"], arrays["filter"], arrays.get("fence"))

    def _array(self, name: str, array: str) -> np.ndarray:
        return np.load(self.wh.local_paths(self.wh.file_paths(DATASET, array, [name]))[0], mmap_mode="r")

    def date_runs(self) -> list[date]:
        return sorted(date.fromisoformat(n[3:]) for n in self.names if n.startswith("dt="))

    def _covering(self, days: list[date], build: bool) -> list[str]:
        """Run names covering exactly the date runs of `days`: a whole landing year or month by its
        compacted run (built where missing and `build`), the rest date by date."""
        names, by_year = [], _group(days, lambda d: d.year)
        present = set(self.date_runs())
        for year, year_days in by_year.items():
            year_all = sorted(d for d in present if d.year == year)
            if year_days == year_all and self._compacted(f"year={year}", build):
                names.append(f"year={year}")
                continue
            for month, month_days in _group(year_days, lambda d: (d.year, d.month)).items():
                key = f"month={month[0]:04d}-{month[1]:02d}"
                month_all = sorted(d for d in present if (d.year, d.month) == month)
                if month_days == month_all and self._compacted(key, build):
                    names.append(key)
                else:
                    names += [f"dt={d.isoformat()}" for d in month_days]
        return names

    def runs_before(self, day: date, build: bool = False) -> list[Run | Group]:
        """What holds every date before `day`: each earlier year by its run, the earlier months of its
        year and the earlier dates of its month each as a Group (compacted runs and union present,
        or built under the index lock where `build`)."""
        earlier = [d for d in self.date_runs() if d < day]
        years = self._covering([d for d in earlier if d.year < day.year], build)
        months = self._covering([d for d in earlier if d.year == day.year and d.month < day.month], build)
        own = [f"dt={d}" for d in earlier if (d.year, d.month) == (day.year, day.month)]
        return [self.run(n) for n in years] + self._grouped(
            f"union={day.year}+", f"01-{day.month - 1:02d}", YEAR_SPAN, months, build) + self._grouped(
            f"union={day:%Y-%m}+", f"01-{day.day - 1:02d}", MONTH_SPAN, own, build)

    def runs_after(self, day: date) -> list[Run]:
        """The runs of every date after `day` (compacted where already built)."""
        later = [d for d in self.date_runs() if d > day]
        own = [d for d in later if (d.year, d.month) == (day.year, day.month)]
        rest = [d for d in later if (d.year, d.month) != (day.year, day.month)]
        return [self.run(n) for n in [f"dt={d}" for d in own] + self._covering(rest, build=False)]

    def found_in(self, keys: np.ndarray, runs: list[Run | Group]) -> tuple[np.ndarray, np.ndarray]:
        """(positions in `keys`, earliest day number) of the hashes of `keys` (sorted by h1) that
        `runs` hold, a chunk of keys at a time."""
        positions, days = [np.empty(0, np.int64)], [np.empty(0, np.int32)]
        for offset, chunk in zip(range(0, len(keys), CHUNK), chunks(keys)):
            probe = Probe.of(chunk)
            first = np.full(len(chunk), np.iinfo(np.int32).max, np.int32)
            for run in runs:
                found, found_days = run.lookup(probe)
                np.minimum.at(first, found, found_days)
            held = np.flatnonzero(first != np.iinfo(np.int32).max)
            positions.append(held + offset)
            days.append(first[held])
        return np.concatenate(positions), np.concatenate(days)

    def source(self, day: date) -> str | None:
        """The stage fingerprint of the priced events `day`'s run was taken from."""
        manifest = self.wh.manifest(DATASET, f"dt={day.isoformat()}")
        return manifest["meta"]["source"] if manifest else None

    def date_run_keys(self, day: date) -> np.ndarray | None:
        """`day`'s run (memory-mapped), or None where it has none."""
        name = f"dt={day.isoformat()}"
        return self.run(name).keys if name in self.names else None

    # -- writing (under index_lock)
    def put_date_run(self, day: date, keys: np.ndarray, source: str, delta: np.ndarray | None = None) -> None:
        """Store `day`'s run (KEYS sorted by h1); `delta`: the hashes it gained or lost, kept until
        mark_propagated, so a bill killed before rebilling later dates is completed by the next."""
        name = f"dt={day.isoformat()}"
        for parent in (f"month={day:%Y-%m}", f"year={day.year}"):
            self._invalidate(parent)
        arrays = {"keys": keys, "days": np.empty(0, np.int32), "filter": build_filter(keys, filter_words(len(keys))),
                  "fence": fence_of(keys)}
        meta = {"level": "date", "day": day_number(day), "entries": len(keys), "source": source}
        if delta is not None and len(delta):
            arrays["delta"] = delta
            meta["pending_delta"] = True
        self.wh.commit_arrays(DATASET, name, arrays, meta)
        self.names.add(name)

    def set_source(self, day: date, source: str) -> None:
        """Record that `day`'s run (unchanged) now comes from the priced events of `source`."""
        manifest = self.wh.manifest(DATASET, f"dt={day.isoformat()}")
        self.wh.recommit(DATASET, f"dt={day.isoformat()}", manifest["files"], {**manifest["meta"], "source": source})

    def pending(self) -> list[date]:
        """Dates whose change was stored but not yet propagated to later dates."""
        return [d for d in self.date_runs() if self.wh.manifest(DATASET, f"dt={d}")["meta"].get("pending_delta")]

    def delta(self, day: date) -> np.ndarray:
        return np.load(self.wh.local_paths(self.wh.file_paths(DATASET, "delta", [f"dt={day}"]))[0])

    def mark_propagated(self, day: date) -> None:
        name = f"dt={day.isoformat()}"
        manifest = self.wh.manifest(DATASET, name)
        files = {k: v for k, v in manifest["files"].items() if k != "delta"}
        meta = {k: v for k, v in manifest["meta"].items() if k != "pending_delta"}
        self.wh.recommit(DATASET, name, files, meta)

    def _invalidate(self, name: str) -> None:
        if name in self.names:
            self.wh.drop(DATASET, name)
            self.names.discard(name)

    def _compacted(self, name: str, build: bool) -> bool:
        """Whether the month or year run `name` is present (building it first where `build`)."""
        if name in self.names:
            return True
        if not build:
            return False
        level, _, key = name.partition("=")
        if level == "month":
            children = [f"dt={d}" for d in self.date_runs() if f"{d:%Y-%m}" == key]
        else:
            months = sorted({f"{d:%Y-%m}" for d in self.date_runs() if d.year == int(key)})
            children = [f"month={m}" for m in months if self._compacted(f"month={m}", build)]
        self._compact(name, level, [self.run(c) for c in children])
        return True

    def _grouped(self, family: str, span: str, span_runs: int, members: list[str], build: bool) -> list[Run | Group]:
        """The runs `members`, as one Group where there are several and their union `family + span`
        (sized for `span_runs` times the largest) is stored, or built where `build`."""
        runs = [self.run(m) for m in members]
        words = self._union(family, family + span, span_runs, runs, build) if len(runs) > 1 else None
        return runs if words is None else [Group(words, runs)]

    def _union(self, family: str, name: str, span_runs: int, runs: list[Run], build: bool) -> np.ndarray | None:
        """The union filter `name` of `runs`, as stored (with the filter files of the runs it holds);
        where `build`, made from the longest stored union of its `family` holding some of them (the
        keys of the others hashed into it) and stored in place of the shorter ones."""
        log_words = filter_words(span_runs * max(len(run.keys) for run in runs), UNION_BITS_PER_KEY)
        wanted = {run.name: self.wh.manifest(DATASET, run.name)["files"]["filter"] for run in runs}
        if self._members(name, log_words) == wanted:
            return self._array(name, "filter")
        if not build:
            return None
        stored = {n: self._members(n, log_words) for n in self.names if n.startswith(family)}
        base = max((n for n, held in stored.items() if held.items() <= wanted.items()),
                   key=lambda n: len(stored[n]), default=None)
        held = stored.get(base, {})
        words = np.array(self._array(base, "filter")) if held else np.zeros(1 << log_words, np.uint64)
        for run in runs:
            if run.name not in held:
                add_to_filter(words, run.keys)
        self.wh.commit_arrays(DATASET, name, {"filter": words}, {"level": "union", "log_words": log_words,
                                                                  "members": wanted})
        for shorter in [n for n in self.names if n.startswith(family) and n < name]:
            self._invalidate(shorter)
        self.names.add(name)
        return words

    def _members(self, name: str, log_words: int) -> dict[str, str]:
        """The runs (with their filter files) the union `name` holds, where it is of `log_words`."""
        meta = self.wh.manifest(DATASET, name)["meta"] if name in self.names else {}
        return meta["members"] if meta.get("log_words") == log_words else {}

    def _compact(self, name: str, level: str, children: list[Run]) -> None:
        """Merge `children` (in day order) into one run, a range of h1 at a time."""
        total = sum(len(c.keys) for c in children)
        log_words = filter_words(total)
        parts = max(1, -(-total // CHUNK))
        bounds = [2**64 * i // parts for i in range(parts + 1)]
        scratch = tempfile.TemporaryDirectory(prefix="billing-index-")
        keys_out = np.lib.format.open_memmap(Path(scratch.name) / "keys.npy", "w+", KEYS, (total,))
        days_out = np.lib.format.open_memmap(Path(scratch.name) / "days.npy", "w+", np.int32, (total,))
        words = np.zeros(1 << log_words, np.uint64)
        at = 0
        for low, high in zip(bounds[:-1], bounds[1:]):
            parts = [_slice(c, low, high) for c in children]
            keys = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, KEYS)
            days = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int32)
            order = np.argsort(keys["h1"], kind="stable")
            keys, days = keys[order], days[order]
            keys_out[at:at + len(keys)], days_out[at:at + len(keys)] = keys, days
            _fill_filter(words, keys, log_words)
            at += len(keys)
        children_meta = {c.name: self.wh.manifest(DATASET, c.name)["meta"].get("source", c.name) for c in children}
        with scratch:
            keys_out.flush()
            days_out.flush()
            self.wh.commit_arrays(DATASET, name, {"keys": keys_out, "days": days_out, "filter": words,
                                                  "fence": fence_of(keys_out)},
                                  {"level": level, "entries": total, "children": children_meta})
        self.names.add(name)


def _slice(run: Run, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """The entries of `run` with low <= h1 < high."""
    start, stop = _bounds(run.keys["h1"], low, high)
    return np.asarray(run.keys[start:stop]), np.asarray(run.days[start:stop])


def _bounds(h1: np.ndarray, low: int, high: int) -> tuple[int, int]:
    """[start, stop) of the sorted `h1` with low <= h1 < high (high may be 2**64)."""
    start = int(np.searchsorted(h1, np.uint64(low))) if low else 0
    stop = len(h1) if high >= 2**64 else int(np.searchsorted(h1, np.uint64(high)))
    return start, stop


def _group(days: list[date], key) -> dict:
    groups: dict = {}
    for d in sorted(days):
        groups.setdefault(key(d), []).append(d)
    return groups


def symmetric_difference(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The hashes in exactly one of two runs (sorted by h1), as KEYS sorted by h1: a range of h1
    at a time."""
    def distinct(keys: np.ndarray) -> np.ndarray:
        return np.unique(np.ascontiguousarray(keys, KEYS).view(np.dtype((np.void, KEYS.itemsize))))

    parts = [np.empty(0, KEYS)]
    for old_part, new_part in _aligned(old, new):
        once = np.setxor1d(distinct(old_part), distinct(new_part), assume_unique=True).view(KEYS)
        parts.append(once[np.argsort(once["h1"], kind="stable")])
    return np.concatenate(parts)


def same_keys(old: np.ndarray, new: np.ndarray) -> bool:
    """Whether two runs hold the same hashes in the same order, a chunk at a time."""
    return len(old) == len(new) and all(np.array_equal(a, b) for a, b in zip(chunks(old), chunks(new)))


def _aligned(first: np.ndarray, second: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Both runs (sorted by h1) cut at the same h1 bounds, about CHUNK hashes a part."""
    parts = max(1, -(-max(len(first), len(second)) // CHUNK))
    bounds = [2**64 * i // parts for i in range(parts + 1)]
    for low, high in zip(bounds[:-1], bounds[1:]):
        yield (_slice_keys(first, low, high), _slice_keys(second, low, high))


def _slice_keys(keys: np.ndarray, low: int, high: int) -> np.ndarray:
    start, stop = _bounds(keys["h1"], low, high)
    return np.asarray(keys[start:stop])


@contextmanager
def index_lock(home: str | Path, database_url: str) -> Iterator[None]:
    """One biller of the index at a time: a PostgreSQL advisory lock where the billing database
    is PostgreSQL (several machines), else a file lock in BILLING_HOME (one machine)."""
    if database_url.startswith("postgresql"):
        engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_SPACE})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_SPACE})
        engine.dispose()
        return
    path = Path(home) / "locks" / "request_index.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
