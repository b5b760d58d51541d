"""The three config files (SPEC §1.4-1.6) as typed, validated objects.

Money and rates are parsed from their text: YAML floats are read as `Decimal` from the scalar's
own characters, never through a binary float.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

CONFIG_FILES = ("pricebook.yaml", "plans.yaml", "customers.yaml")
# Rates carry at most this many decimal places, so a token's cost is an exact multiple of
# 10^-(RATE_PLACES + 3) USD (rates are per 1,000 tokens).
RATE_PLACES = 9
COST_SCALE = RATE_PLACES + 3


class ConfigError(ValueError):
    """A config file that breaks a rule; the message names the file and the field."""


class _DecimalLoader(yaml.SafeLoader):
    """SafeLoader that reads floats as Decimal from their source text."""


_DecimalLoader.add_constructor(
    "tag:yaml.org,2002:float", lambda loader, node: Decimal(loader.construct_scalar(node))
)


@dataclass(frozen=True)
class ModelRate:
    model: str
    effective_from: date
    input_usd_per_1k: Decimal
    output_usd_per_1k: Decimal
    degrade_to: str | None = None


@dataclass(frozen=True)
class ActionTier:
    action: str
    credits: int
    tokens_per_credit: int | None = None

    def credits_for(self, input_tokens: int, output_tokens: int) -> int:
        """Credits of one event of this tier (SPEC §1.4)."""
        if self.tokens_per_credit is None:
            return self.credits
        tokens = input_tokens + output_tokens
        return max(self.credits, -(-tokens // self.tokens_per_credit))


@dataclass(frozen=True)
class PriceBook:
    currency: str
    target_credit_to_cost_ratio: Decimal
    models: tuple[ModelRate, ...]
    actions: tuple[ActionTier, ...]

    def rate_at(self, model: str, day: date) -> ModelRate | None:
        """The rate row with the latest effective_from <= day, or None."""
        rows = [r for r in self.models if r.model == model and r.effective_from <= day]
        return max(rows, key=lambda r: r.effective_from) if rows else None

    def action(self, name: str) -> ActionTier | None:
        return next((a for a in self.actions if a.action == name), None)

    @property
    def model_names(self) -> list[str]:
        return sorted({r.model for r in self.models})


@dataclass(frozen=True)
class RateLimits:
    concurrent: int
    requests_per_minute: int
    burst_multiplier: Decimal
    burst_seconds: int


@dataclass(frozen=True)
class Plan:
    plan: str
    monthly_fee: Decimal
    included_credits: int
    overage_credit_price: Decimal | None
    rollover_max_credits: int
    rollover_expires_after_months: int
    rate_limits: RateLimits

    @property
    def unit_price(self):
        """Plan grant unit price as an exact fraction (SPEC §3)."""
        from fractions import Fraction

        if not self.monthly_fee or not self.included_credits:
            return Fraction(0)
        return Fraction(self.monthly_fee) / self.included_credits


@dataclass(frozen=True)
class Customer:
    org_id: str
    name: str
    plan: str
    start_date: date
    tax_rate: Decimal = Decimal(0)
    email: str = ""
    address: str = ""


@dataclass(frozen=True)
class CreditPurchase:
    purchase_id: str
    org_id: str
    purchased_at: datetime
    credits: int
    price: Decimal
    expires_after_months: int


@dataclass(frozen=True)
class PlanChange:
    """From 00:00 UTC of `effective_from`, the customer is on `plan`; None ends the
    subscription (a cancellation, SPEC §7)."""

    org_id: str
    effective_from: date
    plan: str | None


@dataclass(frozen=True)
class PlanPeriod:
    """A run of consecutive days [start, end) of one month on one plan (SPEC §7)."""

    plan: Plan
    start: date
    end: date  # exclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days


@dataclass(frozen=True)
class BillingConfig:
    price_book: PriceBook
    plans: dict[str, Plan]
    customers: dict[str, Customer]
    purchases: tuple[CreditPurchase, ...]
    fingerprint: str = field(default="", compare=False)
    plan_changes: tuple[PlanChange, ...] = ()

    def only(self, orgs: set[str]) -> "BillingConfig":
        """This config with only the customers in `orgs`, their purchases and plan changes."""
        return replace(self, customers={o: c for o, c in self.customers.items() if o in orgs},
                       purchases=tuple(p for p in self.purchases if p.org_id in orgs),
                       plan_changes=tuple(c for c in self.plan_changes if c.org_id in orgs))

    def plan_of(self, org_id: str) -> Plan:
        """The plan the customer starts on (see plan_on for the plan of a given day)."""
        return self.plans[self.customers[org_id].plan]

    def changes_of(self, org_id: str) -> list[PlanChange]:
        """The customer's plan changes in effective order."""
        return sorted((c for c in self.plan_changes if c.org_id == org_id), key=lambda c: c.effective_from)

    def plan_on(self, org_id: str, day: date) -> Plan | None:
        """The plan in effect on `day` (from its start_date's plan on), None from a cancellation."""
        name: str | None = self.customers[org_id].plan
        for change in self.changes_of(org_id):
            if change.effective_from > day:
                break
            name = change.plan
        return None if name is None else self.plans[name]

    def cancelled_on(self, org_id: str) -> date | None:
        """The first day without a subscription (the cancellation's effective_from), or None."""
        return next((c.effective_from for c in self.changes_of(org_id) if c.plan is None), None)

    def last_plan(self, org_id: str) -> Plan:
        """The plan in effect last: the current one, or the one before the cancellation."""
        names = [self.customers[org_id].plan] + [c.plan for c in self.changes_of(org_id) if c.plan]
        return self.plans[names[-1]]

    def plan_periods(self, org_id: str, month: date) -> list[PlanPeriod]:
        """The plan periods of `month` (SPEC §7): runs of consecutive days on one plan, from the
        month's first day (also in the customer's first month) to its end or the cancellation;
        [] for a month the customer is not subscribed in."""
        first = month.replace(day=1)
        end = first.replace(day=28) + timedelta(days=4)
        end = end.replace(day=1)
        customer = self.customers[org_id]
        if customer.start_date.replace(day=1) > first:
            return []
        cancelled = self.cancelled_on(org_id)
        if cancelled is not None:
            end = min(end, cancelled)
        cuts = sorted({first, *(c.effective_from for c in self.changes_of(org_id) if first < c.effective_from < end)})
        periods = []
        for start, stop in zip(cuts, cuts[1:] + [end]):
            plan = self.plan_on(org_id, start)
            if plan is not None and start < stop:
                periods.append(PlanPeriod(plan, start, stop))
        return periods


def load_config(folder: str | Path) -> BillingConfig:
    """Read and validate pricebook.yaml, plans.yaml and customers.yaml from `folder`."""
    folder = Path(folder)
    raw, digest = {}, hashlib.sha256()
    for name in CONFIG_FILES:
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"{path}: missing (BILLING_CONFIG points to {folder})")
        text = path.read_bytes()
        digest.update(name.encode() + b"\0" + text + b"\0")
        try:
            raw[name] = yaml.load(text, Loader=_DecimalLoader) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    price_book = _price_book(raw["pricebook.yaml"])
    plans = {p.plan: p for p in map(_plan, _items(raw["plans.yaml"], "plans", "plans.yaml"))}
    cust_doc = raw["customers.yaml"]
    customers = {c.org_id: c for c in map(_customer, _items(cust_doc, "customers", "customers.yaml"))}
    purchases = tuple(
        map(_purchase, _items(cust_doc, "credit_purchases", "customers.yaml", required=False))
    )
    changes = tuple(map(_plan_change, _items(cust_doc, "plan_changes", "customers.yaml", required=False)))
    _check_references(price_book, plans, customers, purchases)
    _check_plan_changes(plans, customers, changes)
    return BillingConfig(price_book, plans, customers, purchases, digest.hexdigest(), changes)


def _items(doc: Any, key: str, file: str, required: bool = True) -> list[dict]:
    items = doc.get(key) if isinstance(doc, dict) else None
    if items is None and not required:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"{file}: `{key}` must be a list of mappings")
    return [dict(i, _file=file, _section=key) for i in items]


def _where(item: dict) -> str:
    return f"{item['_file']}: {item['_section']} entry {item.get(next(iter(item)))!r}"


def _req(item: dict, key: str) -> Any:
    if item.get(key) is None:
        raise ConfigError(f"{_where(item)}: `{key}` is required")
    return item[key]


def _decimal(item: dict, key: str, default: Any = ..., places: int | None = None) -> Decimal | None:
    value = item.get(key, None)
    if value is None:
        if default is ...:
            raise ConfigError(f"{_where(item)}: `{key}` is required")
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ConfigError(f"{_where(item)}: `{key}` must be a decimal, got {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ConfigError(f"{_where(item)}: `{key}` is not a decimal: {value!r}") from exc
    if not number.is_finite() or number < 0:
        raise ConfigError(f"{_where(item)}: `{key}` must be a finite number >= 0, got {value!r}")
    if places is not None and -number.as_tuple().exponent > places:
        raise ConfigError(f"{_where(item)}: `{key}` has more than {places} decimal places")
    return number


def _int(item: dict, key: str, default: Any = ..., minimum: int = 0) -> int:
    value = item.get(key, None)
    if value is None and default is not ...:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{_where(item)}: `{key}` must be an integer >= {minimum}, got {value!r}")
    return value


def _date(item: dict, key: str) -> date:
    value = _req(item, key)
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"{_where(item)}: `{key}` is not a date: {value!r}") from exc


def _instant(item: dict, key: str) -> datetime:
    value = _req(item, key)
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise ConfigError(f"{_where(item)}: `{key}` is not an RFC 3339 time: {value!r}") from exc
    if value.tzinfo is None:
        raise ConfigError(f"{_where(item)}: `{key}` needs a UTC offset: {value!r}")
    return value.astimezone(timezone.utc)


def _price_book(doc: Any) -> PriceBook:
    if not isinstance(doc, dict):
        raise ConfigError("pricebook.yaml: must be a mapping")
    root = dict(doc, _file="pricebook.yaml", _section="price book")
    models = tuple(
        ModelRate(
            model=str(_req(m, "model")),
            effective_from=_date(m, "effective_from"),
            input_usd_per_1k=_decimal(m, "input_usd_per_1k", places=RATE_PLACES),
            output_usd_per_1k=_decimal(m, "output_usd_per_1k", places=RATE_PLACES),
            degrade_to=m.get("degrade_to"),
        )
        for m in _items(doc, "models", "pricebook.yaml")
    )
    actions = tuple(
        ActionTier(
            action=str(_req(a, "action")),
            credits=_int(a, "credits"),
            tokens_per_credit=_int(a, "tokens_per_credit", default=None, minimum=1),
        )
        for a in _items(doc, "actions", "pricebook.yaml")
    )
    seen = set()
    for r in models:
        if (r.model, r.effective_from) in seen:
            raise ConfigError(f"pricebook.yaml: two rates for {r.model} from {r.effective_from}")
        seen.add((r.model, r.effective_from))
    if len({a.action for a in actions}) != len(actions):
        raise ConfigError("pricebook.yaml: an action tier is listed twice")
    return PriceBook(
        currency=str(doc.get("currency", "USD")),
        target_credit_to_cost_ratio=_decimal(root, "target_credit_to_cost_ratio", Decimal("3.0")),
        models=models,
        actions=actions,
    )


def _plan(item: dict) -> Plan:
    rollover = dict(item.get("rollover") or {}, _file=item["_file"], _section=f"plan {item.get('plan')} rollover")
    limits = dict(item.get("rate_limits") or {}, _file=item["_file"], _section=f"plan {item.get('plan')} rate_limits")
    return Plan(
        plan=str(_req(item, "plan")),
        monthly_fee=_decimal(item, "monthly_fee"),
        included_credits=_int(item, "included_credits"),
        overage_credit_price=_decimal(item, "overage_credit_price", default=None),
        rollover_max_credits=_int(rollover, "max_credits", default=0),
        rollover_expires_after_months=_int(rollover, "expires_after_months", default=1, minimum=1),
        rate_limits=RateLimits(
            concurrent=_int(limits, "concurrent", default=10, minimum=1),
            requests_per_minute=_int(limits, "requests_per_minute", default=60, minimum=1),
            burst_multiplier=_decimal(limits, "burst_multiplier", default=Decimal(1)),
            burst_seconds=_int(limits, "burst_seconds", default=0),
        ),
    )


def _customer(item: dict) -> Customer:
    return Customer(
        org_id=str(_req(item, "org_id")),
        name=str(item.get("name") or item["org_id"]),
        plan=str(_req(item, "plan")),
        start_date=_date(item, "start_date"),
        tax_rate=_decimal(item, "tax_rate", default=Decimal(0)),
        email=str(item.get("email") or ""),
        address=str(item.get("address") or ""),
    )


def _purchase(item: dict) -> CreditPurchase:
    return CreditPurchase(
        purchase_id=str(_req(item, "purchase_id")),
        org_id=str(_req(item, "org_id")),
        purchased_at=_instant(item, "purchased_at"),
        credits=_int(item, "credits", minimum=1),
        price=_decimal(item, "price"),
        expires_after_months=_int(item, "expires_after_months", minimum=1),
    )


def _plan_change(item: dict) -> PlanChange:
    if "plan" not in item:
        raise ConfigError(f"{_where(item)}: `plan` is required (null for a cancellation)")
    plan = item["plan"]
    return PlanChange(org_id=str(_req(item, "org_id")), effective_from=_date(item, "effective_from"),
                      plan=None if plan is None else str(plan))


def _check_plan_changes(plans, customers, changes) -> None:
    """SPEC §7: a change after the start, to a known plan, one per customer and date, none after
    a cancellation."""
    seen: dict[tuple[str, date], PlanChange] = {}
    for change in sorted(changes, key=lambda c: (c.org_id, c.effective_from)):
        where = f"customers.yaml: plan_changes entry for {change.org_id} from {change.effective_from}"
        customer = customers.get(change.org_id)
        if customer is None:
            raise ConfigError(f"{where}: unknown org {change.org_id!r}")
        if change.effective_from <= customer.start_date:
            raise ConfigError(f"{where}: must be after the customer's start_date {customer.start_date}")
        if change.plan is not None and change.plan not in plans:
            raise ConfigError(f"{where}: unknown plan {change.plan!r}")
        if (change.org_id, change.effective_from) in seen:
            raise ConfigError(f"{where}: a second change of {change.org_id} on {change.effective_from}")
        cancelled = [c for (org, _), c in seen.items() if org == change.org_id and c.plan is None]
        if cancelled:
            raise ConfigError(f"{where}: after the cancellation from {cancelled[0].effective_from}")
        seen[(change.org_id, change.effective_from)] = change


def _check_references(price_book, plans, customers, purchases) -> None:
    models = set(price_book.model_names)
    for r in price_book.models:
        if r.degrade_to is not None and r.degrade_to not in models:
            raise ConfigError(f"pricebook.yaml: {r.model} degrades to unknown model {r.degrade_to!r}")
    for c in customers.values():
        if c.plan not in plans:
            raise ConfigError(f"customers.yaml: {c.org_id} is on unknown plan {c.plan!r}")
    ids = set()
    for p in purchases:
        if p.org_id not in customers:
            raise ConfigError(f"customers.yaml: purchase {p.purchase_id} for unknown org {p.org_id!r}")
        if p.purchase_id in ids:
            raise ConfigError(f"customers.yaml: purchase id {p.purchase_id} is listed twice")
        ids.add(p.purchase_id)
