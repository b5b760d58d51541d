"""The credit ledger (SPEC §3): events consume grants; what no grant covers is overage.

Vectorized in three steps, so no Python loop runs over events:
1. every customer's timeline is cut at its boundaries (month starts, plan period starts, purchase
   starts, expiries, the cancellation);
   between two boundaries the set of grants and their order are constant (an *interval*), and
   each event is placed in its interval by a binary search on (customer rank, ledger time) keys;
2. a walk over customers x boundaries, on credit totals per interval only, consumes grants in
   SPEC order, expires them, rolls plan credits over, and records the credit summary per month;
3. for the closed month, each event's share of every grant comes from cumulative credit sums of
   the events against the cumulative capacities of the interval's ordered grants (search_sorted).
See docs/ledger.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Annotated

import polars as pl
from pydantic import ConfigDict, Strict, with_config

from billing_pipelines.config import BillingConfig, Plan, PlanPeriod
from billing_pipelines.ledger.grants import (
    Grant,
    month_instant,
    plan_grant,
    purchase_grant,
    purchases_by_org,
    rollover_grant,
    utc_naive,
)
from billing_pipelines.ledger.subscriptions import Subscription, changes_by_org, subscription_of
from billing_pipelines.ledger.usage import UsageCodes, revenue_shares, usage_summary
from billing_pipelines.periods import add_months

_EPOCH, _MICROSECOND = datetime(1970, 1, 1), timedelta(microseconds=1)
_EVENT_COLUMNS = (
    "request_id", "org_id", "ts", "billing_month", "ledger_time", "model", "action", "credits", "cost_usd",
)
ALLOCATION_SCHEMA = {
    "request_id": pl.Utf8,
    "org_id": pl.Utf8,
    "billing_month": pl.Date,
    "ledger_time": pl.Datetime("us"),
    "model": pl.Utf8,
    "action": pl.Utf8,
    "grant_id": pl.Categorical,
    "grant_kind": pl.Categorical,
    "credits": pl.Int64,
    "unit_price_num": pl.Int64,
    "unit_price_den": pl.Int64,
}


Credits = Annotated[int, Strict()]


@with_config(ConfigDict(extra="forbid"))
@dataclass
class CreditSummary:
    """The month's credit summary of SPEC §4 for one customer (in an invoice, typed and checked:
    whole numbers, no other field)."""

    opening: Credits = 0
    rolled_over_in: Credits = 0
    granted: Credits = 0
    purchased: Credits = 0
    consumed: Credits = 0
    overage: Credits = 0
    expired: Credits = 0
    rolled_over_out: Credits = 0
    closing: Credits = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class Ledger:
    """The ledger closed at the end of `month`: every grant's state at the next month's first
    instant, credit summaries per customer and month, the allocations of `month`'s events, the
    month's usage_summary and revenue_shares (see ledger/usage.py), the customers `month` bills
    (SPEC §7: those subscribed in it, and later ones with events billed in it) and each
    customer's overage of `month` by plan period."""

    month: date
    grants: list[Grant]
    summaries: dict[str, dict[date, CreditSummary]]
    allocations: pl.DataFrame
    usage: pl.DataFrame
    revenue_shares: pl.DataFrame
    billed: list[str]
    overage: dict[str, list[PeriodOverage]]


@dataclass
class _Interval:
    """Credits a customer asks for between two boundaries, and the grants there in SPEC order;
    `period` is the plan period it lies in (None after a cancellation) and `plan` the plan whose
    overage price applies there."""

    gid: int
    start: datetime
    period: PlanPeriod | None
    plan: Plan
    demand: int = 0
    events: int = 0
    overage: int = 0
    capacities: list[tuple[Grant, int]] = field(default_factory=list)


@dataclass(frozen=True)
class PeriodOverage:
    """Overage credits of one plan period of the month (`period` None: at ledger times after
    the cancellation), at the overage price of `plan`."""

    period: PlanPeriod | None
    plan: Plan
    credits: int


def months_between(first: date, until: date) -> list[date]:
    """First days of the months from `first` up to, excluding, `until`."""
    months, month = [], first.replace(day=1)
    while month < until:
        months.append(month)
        month = add_months(month, 1)
    return months


def expiry_month(moment: datetime) -> date:
    """Month an expiry at `moment` falls in: the month of (M start, M+1 start]."""
    return (moment - timedelta(microseconds=1)).date().replace(day=1)


class CustomerBook:
    """One customer's grants walked through its boundaries on credit totals per interval."""

    def __init__(
        self, subscription: Subscription, since: date, purchases, until: date, opening: list[Grant] = ()
    ):
        """Walk the months from `since` up to `until` (their plan periods are in `subscription`);
        `opening` are the grants alive at the first instant of `since`'s month (copied), as a
        previous close left them."""
        self.org_id, self.subscription, self.until = subscription.org_id, subscription, month_instant(until)
        months = months_between(since, until)
        first = month_instant(since)
        self.opening = [replace(g) for g in opening]
        periods = [p for m in months for p in subscription.periods[m]]
        self.new = [g for g in (plan_grant(self.org_id, p) for p in periods) if g.credits > 0]
        self.new += [g for g in map(purchase_grant, purchases) if first <= g.start < self.until]
        for g in self.new:
            self._end_with_subscription(g)
        self.grants = self.opening + self.new
        self.summaries = {m: CreditSummary() for m in months}
        for g in self.new:
            month = g.start.date().replace(day=1)
            if g.kind == "purchase":
                self.summaries[month].purchased += g.credits
            else:
                self.summaries[month].granted += g.credits
        for g in self.opening:
            if g.kind == "rollover" and g.start == first:
                self.summaries[since.replace(day=1)].rolled_over_in += g.credits
        starts = {month_instant(m) for m in months} | {g.start for g in self.new}
        starts |= {datetime.combine(p.start, datetime.min.time()) for p in periods}
        expiries = {g.expiry for g in self.grants if g.expiry <= self.until}
        ends = {subscription.end} if subscription.end and first <= subscription.end < self.until else set()
        self.boundaries = sorted(starts | expiries | ends | {self.until})

    def _end_with_subscription(self, grant: Grant) -> Grant:
        """A grant alive at the cancellation expires then (SPEC §7)."""
        if self.subscription.end is not None:
            grant.expiry = min(grant.expiry, self.subscription.end)
        return grant

    def walk(self, intervals: list[_Interval]) -> None:
        """Consume, expire and roll over along the boundaries; `intervals` has one entry per
        boundary before `until`, with its demand filled in."""
        live: list[Grant] = list(self.opening)
        pending = sorted(self.new, key=lambda g: g.start)
        for boundary, interval in zip(self.boundaries, intervals + [None]):
            live = self._settle(boundary, live)
            if boundary.day == 1 and boundary.time() == datetime.min.time():
                self._open_month(boundary, live)
            if interval is None:
                break
            while pending and pending[0].start <= boundary:
                live.append(pending.pop(0))
            live.sort(key=lambda g: g.priority)
            self._consume(interval, live)

    def _settle(self, boundary: datetime, live: list[Grant]) -> list[Grant]:
        """Expire the grants whose expiry is `boundary`; plan credits roll over first."""
        kept = [g for g in live if g.expiry > boundary]
        ending = [g for g in live if g.expiry <= boundary]
        kept += self._roll_over(boundary, [g for g in ending if g.kind == "plan"])
        for grant in ending:
            grant.expired = grant.left
            self.summaries[expiry_month(grant.expiry)].expired += grant.expired
        return kept

    def _roll_over(self, boundary: datetime, plan_grants: list[Grant]) -> list[Grant]:
        """Month M's plan grants ending at M+1's first instant roll over (SPEC §3, §7): at most
        the max_credits of the plan of M's last day, taken from the latest start first, each
        part at its source's unit price; nothing rolls over at or after a cancellation."""
        if not plan_grants or self.subscription.ended_by(boundary):
            return []
        month = expiry_month(boundary)
        plan = self.subscription.last_day_plan(month)
        room, rollovers = plan.rollover_max_credits, []
        for grant in sorted(plan_grants, key=lambda g: g.start, reverse=True):
            credits = min(grant.left, room)
            if credits <= 0:
                continue
            grant.rolled_over, room = credits, room - credits
            rollovers.append(self._end_with_subscription(rollover_grant(grant, plan, credits)))
        self.grants += rollovers
        moved = sum(r.credits for r in rollovers)
        self.summaries[month].rolled_over_out += moved
        if boundary.date() in self.summaries:
            self.summaries[boundary.date()].rolled_over_in += moved
        return rollovers

    def _open_month(self, boundary: datetime, live: list[Grant]) -> None:
        """Opening of the month starting at `boundary` and closing of the month before it."""
        left = sum(g.left for g in live)
        month = boundary.date()
        if month in self.summaries:
            self.summaries[month].opening = left
        previous = add_months(month, -1)
        if previous in self.summaries:
            self.summaries[previous].closing = left

    def _consume(self, interval: _Interval, live: list[Grant]) -> None:
        need = interval.demand
        summary = self.summaries[interval.start.date().replace(day=1)]
        summary.consumed += need
        for grant in live:
            if need == 0:
                break
            available = grant.left
            if available <= 0:
                continue
            interval.capacities.append((grant, available))
            take = min(available, need)
            grant.consumed += take
            need -= take
        summary.overage += need
        interval.overage = need


def run_ledger(
    config: BillingConfig, events: pl.DataFrame, month: date,
    opening: dict[str, list[Grant]] | None = None,
) -> Ledger:
    """The ledger of every customer started by `month`, from the full history of `events`
    (billed events with ledger_time and billing_month, SPEC §2), or, where `opening` is given,
    from the grants each customer closed with the month before (see opening_grants) and the
    events billed in `month` only."""
    month = month.replace(day=1)
    until = add_months(month, 1)
    books = _books(config, month, until, opening)
    period = pl.col("ledger_time") < month_instant(until)
    if opening is not None:
        period &= pl.col("ledger_time") >= month_instant(month)
    history = _only(events.select(_EVENT_COLUMNS), period)
    _check_orgs(history, books)
    book = config.price_book
    codes = UsageCodes(list(books), book.model_names, [a.action for a in book.actions])
    intervals, placed = _place_events(books, history, codes)
    for org_id, customer_book in books.items():
        customer_book.walk(intervals[org_id])
    current = {o: [i for i in intervals[o] if i.start >= month_instant(month)] for o in books}
    billed = _only(placed, pl.col("billing_month") == month)
    allocations, shares = allocate(billed, [i for o in books for i in current[o]], _overage_prices(intervals))
    return Ledger(
        month=month,
        grants=[g for b in books.values() for g in b.grants],
        summaries={o: b.summaries for o, b in books.items()},
        allocations=allocations,
        usage=usage_summary(billed, codes),
        revenue_shares=revenue_shares(shares, codes),
        billed=[o for o, b in books.items() if b.subscription.periods[month] or any(i.events for i in current[o])],
        overage={o: _period_overage(current[o]) for o in books},
    )


def _overage_prices(intervals: dict[str, list[_Interval]]) -> list[Fraction]:
    """The overage price of every interval, by gid (0 where overage is not billed)."""
    return [Fraction(i.plan.overage_credit_price or 0) for group in intervals.values() for i in group]


def _period_overage(intervals: list[_Interval]) -> list[PeriodOverage]:
    """The overage of a month's intervals summed by plan period, in period order (the part after
    a cancellation last)."""
    credits: dict[PlanPeriod | None, int] = {}
    plans: dict[PlanPeriod | None, Plan] = {}
    for i in intervals:
        credits[i.period] = credits.get(i.period, 0) + i.overage
        plans[i.period] = i.plan
    return [PeriodOverage(period, plans[period], total) for period, total in credits.items()]


def _only(frame: pl.DataFrame, condition: pl.Expr) -> pl.DataFrame:
    """`frame` filtered on `condition`, without a copy where every row passes."""
    return frame if frame.select(condition.all()).item() else frame.filter(condition)


def opening_grants(closed_month: date, customers, grants: list[Grant]) -> dict[str, list[Grant]]:
    """Per customer closed in `closed_month`, its grants with credits left at the next month's
    first instant: the state the next month's ledger opens with."""
    next_start = month_instant(add_months(closed_month.replace(day=1), 1))
    opening: dict[str, list[Grant]] = {org_id: [] for org_id in customers}
    for g in grants:
        if g.org_id in opening and g.expiry > next_start and g.left > 0:
            opening[g.org_id].append(g)
    return opening


def _books(
    config: BillingConfig, month: date, until: date, opening: dict[str, list[Grant]] | None
) -> dict[str, CustomerBook]:
    """A book per customer started by `month`, walked from its start (or from `opening`)."""
    books, bought, changes = {}, purchases_by_org(config.purchases), changes_by_org(config)
    for org_id in sorted(config.customers):
        customer = config.customers[org_id]
        if customer.start_date.replace(day=1) > month:
            continue
        purchases = bought.get(org_id, [])
        own_changes = changes.get(org_id, ())
        _check_purchases(org_id, customer.start_date, own_changes, purchases)
        if opening is None or customer.start_date.replace(day=1) == month:
            since, alive = customer.start_date, []
        elif org_id in opening:
            since, alive = month, opening[org_id]
        elif _cancelled_by(own_changes, month):
            since, alive = month, []  # every grant expired at the cancellation
        else:
            raise ValueError(f"{org_id}: no closing state of the month before {month:%Y-%m}")
        subscription = subscription_of(config, org_id, months_between(since, until), own_changes)
        books[org_id] = CustomerBook(subscription, since, purchases, until, alive)
    return books


def _cancelled_by(changes, month: date) -> bool:
    """Whether the subscription ended on or before `month`'s first day."""
    return any(c.plan is None and c.effective_from <= month for c in changes)


def _check_purchases(org_id: str, start: date, changes, purchases) -> None:
    """Purchases fall within the subscription: from the start_date, before a cancellation."""
    early = [p for p in purchases if p.purchased_at.date() < start]
    if early:
        raise ValueError(f"purchase {early[0].purchase_id} is before {org_id}'s start_date")
    end = next((c.effective_from for c in changes if c.plan is None), None)
    late = [p for p in purchases if end is not None and utc_naive(p.purchased_at).date() >= end]
    if late:
        raise ValueError(f"purchase {late[0].purchase_id} is at or after {org_id}'s cancellation on {end}")


def _check_orgs(history: pl.DataFrame, books: dict[str, CustomerBook]) -> None:
    """Every event belongs to a customer billed by then, and happened before its cancellation
    (ingest quarantines the rest)."""
    bounds = pl.DataFrame(
        {"org_id": list(books), "first": [b.boundaries[0] for b in books.values()],
         "end": [b.subscription.end for b in books.values()]},
        schema={"org_id": pl.Utf8, "first": pl.Datetime("us"), "end": pl.Datetime("us")},
    )
    span = history.group_by("org_id").agg(pl.col("ledger_time").min(), pl.col("ts").max())
    stray = span.join(bounds, on="org_id", how="left").filter(
        pl.col("first").is_null() | (pl.col("ledger_time") < pl.col("first"))
    )
    if stray.height:
        org_id, at, *_ = stray.sort("org_id").row(0)
        raise ValueError(
            f"billed events of org {org_id!r} at {at}: not a customer billed then "
            f"({stray.height} such orgs; ingest should have quarantined them)"
        )
    ended = span.join(bounds, on="org_id").filter(pl.col("ts") >= pl.col("end"))
    if ended.height:
        org_id, _, at, _, end = ended.sort("org_id").row(0)
        raise ValueError(
            f"billed events of org {org_id!r} at {at}: at or after its cancellation ({end:%Y-%m-%d}; "
            f"{ended.height} such orgs; ingest should have quarantined them as after_customer_end)"
        )


def _place_events(
    books: dict[str, CustomerBook], history: pl.DataFrame, codes: UsageCodes
) -> tuple[dict[str, list[_Interval]], pl.DataFrame]:
    """One interval per customer boundary, carrying its demand; each event tagged with its
    interval `gid`, its consumption-order `key` (customer rank, ledger time; ties by request_id)
    and its `usage_code`. Boundaries and events share the key: a binary search places events."""
    intervals: dict[str, list[_Interval]] = {}
    cut_keys: list[int] = []
    for rank, (org_id, book) in enumerate(books.items()):
        intervals[org_id] = []
        for boundary in book.boundaries[:-1]:
            period = book.subscription.period_at(boundary)
            plan = period.plan if period else book.subscription.last_plan
            intervals[org_id].append(_Interval(len(cut_keys), boundary, period, plan))
            cut_keys.append(rank << 64 | (boundary - _EPOCH) // _MICROSECOND)
    rank = pl.col("org_id").cast(pl.Enum(list(books))).to_physical().cast(pl.Int128)
    try:
        placed = history.with_columns(
            key=rank * 2**64 + pl.col("ledger_time").dt.epoch("us").cast(pl.Int128),
            usage_code=codes.expr(),
        )
    except pl.exceptions.InvalidOperationError as exc:
        raise ValueError(f"billed events with a model or action not in the price book: {exc}") from exc
    cuts = pl.Series(cut_keys, dtype=pl.Int128)
    placed = placed.with_columns(gid=cuts.search_sorted(placed["key"], side="right").cast(pl.Int64) - 1)
    by_gid = {i.gid: i for group in intervals.values() for i in group}
    for gid, credits, count in placed.group_by("gid").agg(pl.col("credits").sum(), pl.len()).iter_rows():
        by_gid[gid].demand, by_gid[gid].events = credits, count
    return intervals, placed


def allocate(
    events: pl.DataFrame, intervals: list[_Interval], overage_prices: list[Fraction]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each event's credits split over the grants of its interval in consumption order (SPEC §3);
    what lies beyond the interval's grants is overage (grant_id null, at the overage price of the
    interval's plan, `overage_prices` by gid, 0 where it is not billed). `events` are placed
    events (with `key` and `gid`) in any order; rows come out in consumption order, the shares of
    events split across grants after the others (deterministic, whatever the input order).

    In consumption order every event covers (start, end] of the cumulative credit sum, and the
    interval's grants, in SPEC order, cover consecutive ranges of the same axis: an event lies in
    the grant found by binary search, and only events across a grant's end are split. All of it
    runs on numeric columns; the event's text columns are gathered once, at the end. Also returns
    the shares' (usage_code, credits, unit_price_num, unit_price_den), for revenue_shares."""
    order = events.select(pl.arg_sort_by("key", "request_id")).to_series()
    ranges = events.select("gid", "credits", "usage_code")[order].with_columns(
        row=order, end=pl.col("credits").cum_sum()
    )
    ends = _grant_ends(ranges, intervals)
    ranges = _only(ranges, pl.col("credits") > 0)
    ranges = ranges.with_columns(
        first=ends["end"].search_sorted(ranges["end"] - ranges["credits"], side="right").cast(pl.Int64),
        last=ends["end"].search_sorted(ranges["end"], side="left").cast(pl.Int64),
    )
    columns = ["row", "gid", "usage_code", "credits", "grant"]
    split = _split_shares(ranges.filter(pl.col("first") != pl.col("last")), ends).select(columns)
    whole = ranges.select(*columns[:-1], grant="first").filter(pl.col("grant") == ranges["last"])
    del ranges
    return _allocation_rows(events, pl.concat([whole, split], rechunk=False), ends, overage_prices)


def _grant_ends(ranges: pl.DataFrame, intervals: list[_Interval]) -> pl.DataFrame:
    """The grants reached in each interval with the end of their range on the cumulative axis,
    and a sentinel past every end (points beyond an interval's grants are overage)."""
    groups = ranges.group_by("gid").agg(
        base=(pl.col("end") - pl.col("credits")).first(), total=pl.col("credits").sum()
    )
    reached = (
        _capacities(intervals)
        .join(groups, on="gid")
        .sort("gid", "rank")
        .with_columns(reach=pl.col("capacity").cum_sum().over("gid"))
        .filter(pl.col("reach") - pl.col("capacity") < pl.col("total"))
        .select(
            "gid", "grant_id", "grant_kind", "unit_price_num", "unit_price_den",
            end=pl.col("base") + pl.min_horizontal("reach", "total"),
        )
    )
    sentinel = pl.DataFrame({"gid": [-1], "end": [2**63 - 1]})
    return pl.concat([reached, sentinel], how="diagonal_relaxed").with_columns(
        pl.col("grant_id", "grant_kind").cast(pl.Categorical)
    )


def _split_shares(split: pl.DataFrame, ends: pl.DataFrame) -> pl.DataFrame:
    """One row per (event, grant) for the events across grant ends: the share from the later of
    the event's start and the previous grant's end to the earlier of its end and the grant's."""
    shares = split.with_columns(grant=pl.int_ranges("first", pl.col("last") + 1)).explode("grant")
    edge = ends["end"]
    upper = pl.when(pl.col("grant") == pl.col("last")).then("end").otherwise(
        edge.gather(shares["grant"])
    )
    lower = pl.when(pl.col("grant") == pl.col("first")).then(pl.col("end") - pl.col("credits")).otherwise(
        edge.gather((shares["grant"] - 1).clip(lower_bound=0))
    )
    return shares.with_columns(credits=upper - lower)


def _allocation_rows(
    events: pl.DataFrame, shares: pl.DataFrame, ends: pl.DataFrame, overage_prices: list[Fraction]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Allocation rows: each share with its grant, or as overage at its interval's price."""
    grant = ends[shares["grant"]]
    gid = shares["gid"]
    covered = grant["gid"] == shares["gid"]
    priced = shares.select("usage_code", "credits").with_columns(
        unit_price_num=pl.when(covered).then(grant["unit_price_num"]).otherwise(
            pl.Series([p.numerator for p in overage_prices], dtype=pl.Int64).gather(gid)
        ),
        unit_price_den=pl.when(covered).then(grant["unit_price_den"]).otherwise(
            pl.Series([p.denominator for p in overage_prices], dtype=pl.Int64).gather(gid)
        ),
    )
    text = events.select("request_id", "org_id", "billing_month", "ledger_time", "model", "action")
    rows = text[shares["row"]].with_columns(
        grant_id=pl.when(covered).then(grant["grant_id"]),
        grant_kind=pl.when(covered).then(grant["grant_kind"]).otherwise(pl.lit("overage", pl.Categorical)),
        credits=shares["credits"],
        unit_price_num=priced["unit_price_num"],
        unit_price_den=priced["unit_price_den"],
    )
    return rows.cast(ALLOCATION_SCHEMA), priced


def _capacities(intervals: list[_Interval]) -> pl.DataFrame:
    rows = [
        (i.gid, rank, g.grant_id, g.kind, cap, g.unit_price.numerator, g.unit_price.denominator)
        for i in intervals
        for rank, (g, cap) in enumerate(i.capacities)
    ]
    names = ["gid", "rank", "grant_id", "grant_kind", "capacity", "unit_price_num", "unit_price_den"]
    types = [pl.Int64, pl.Int64, pl.Utf8, pl.Utf8, pl.Int64, pl.Int64, pl.Int64]
    return pl.DataFrame(rows, schema=list(zip(names, types)), orient="row")
