"""The three config files (SPEC §1.4-1.6) as typed, validated objects.

One validation mechanism for every config file (seller.yaml too): `read_yaml` keeps the line of
every key and list item; pydantic checks the data against the frozen dataclasses below, whose
field types carry the rules (strict types, no unknown field); the checks across entries run as
model validators of the file schemas; and the first failure becomes one `ConfigError` naming the
file, the entry, the field and the line. Money and rates are parsed from their text: YAML floats
are read as `Decimal` from the scalar's own characters, never through a binary float.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    model_validator,
    with_config,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

CONFIG_FILES = ("pricebook.yaml", "plans.yaml", "customers.yaml")
# Rates carry at most this many decimal places, so a token's cost is an exact multiple of
# 10^-(RATE_PLACES + 3) USD (rates are per 1,000 tokens).
RATE_PLACES = 9


class ConfigError(ValueError):
    """A config file that breaks a rule; the one-line message names the file and the field."""


# --- Reading YAML with the line of every key and item ------------------------------------------

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_PLAIN_INT = re.compile(r"[-+]?(0|[1-9][0-9_]*)")


class _ConfigLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml parses 4x faster
    """SafeLoader for config files: floats are Decimals from their text, integers only in plain
    decimal notation (`010` or `0x10` stay text), dates and times stay text, so that the schema
    parses them and a bad one is reported with its file and field."""


def _decimal_scalar(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal | str:
    text = loader.construct_scalar(node)
    try:
        return Decimal(text)
    except InvalidOperation:
        return text  # `.inf`, `.nan`: refused by the schema as "not a decimal"


def _int_scalar(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | str:
    text = loader.construct_scalar(node)
    return int(text.replace("_", "")) if _PLAIN_INT.fullmatch(text) else text


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_constructor("tag:yaml.org,2002:float", _decimal_scalar)
_ConfigLoader.add_constructor("tag:yaml.org,2002:int", _int_scalar)

Lines = dict[tuple, int]  # path of keys and list indexes -> 1-based line


@dataclass(frozen=True)
class YamlDocument:
    """One config file's data, with the line of each key and list item."""

    name: str  # what messages call the file: `customers.yaml`
    data: Any
    lines: Lines = field(default_factory=dict)


def read_yaml(text: bytes, name: str) -> YamlDocument:
    """The YAML document `name` (an empty one is an empty mapping), or a ConfigError with the line
    of a syntax error or of a key given twice in one mapping."""
    loader = _ConfigLoader(text)
    lines: Lines = {}
    try:
        node = loader.get_single_node()
        if node is not None:
            _collect_lines(node, (), lines, name)  # before merge keys (`<<`) are flattened
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{name}: not valid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: not valid YAML: {str(exc).splitlines()[0]}") from None
    finally:
        loader.dispose()
    return YamlDocument(name, {} if data is None else data, lines)


def _collect_lines(node: yaml.Node, path: tuple, lines: Lines, name: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, path + (index,), lines, name)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            step = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            if path + (step,) in lines:
                first, again = lines[path + (step,)], key.start_mark.line + 1
                raise ConfigError(f"{name}: key `{step}` given twice in one mapping (lines {first} and {again})")
            _collect_lines(value, path + (step,), lines, name)
            lines[path + (step,)] = key.start_mark.line + 1


# --- Field types: what each value of a config file must be --------------------------------------

ENTRY = ConfigDict(extra="forbid")  # a config entry: every key is a field, no other key


def _config_decimal(value: Any) -> Any:
    """A decimal from its text or a YAML integer; a binary float or a boolean is refused."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return Decimal(str(value).strip())
        except InvalidOperation:
            pass
    raise PydanticCustomError("config_value", "not a decimal")


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RFC_3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})")


def _config_date(value: Any) -> date:
    """YYYY-MM-DD, a real calendar day."""
    if type(value) is date:
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError("config_value", "not a date")


def _config_instant(value: Any) -> datetime:
    """An RFC 3339 date-time with a UTC offset, normalised to UTC."""
    if isinstance(value, str) and _RFC_3339.fullmatch(value):
        try:
            return datetime.fromisoformat(value.upper()).astimezone(UTC)
        except ValueError:
            pass
    raise PydanticCustomError("config_value", "not an RFC 3339 time with a UTC offset")


def _config_name(value: str) -> str:
    if not value or value != value.strip():
        raise PydanticCustomError("config_value", "not a name (empty, or spaces around it)")
    return value


ALERT = re.compile(r"credits_used_(?P<used>[1-9][0-9]*)|overage_started|credits_expiring_(?P<days>[1-9][0-9]*)d")


def _alert_name(value: str) -> str:
    """`credits_used_N` (N % of the month's credits used, 1-100), `overage_started` or
    `credits_expiring_Nd` (purchased or rolled-over credits expiring within N days, 1-365)."""
    found = ALERT.fullmatch(value)
    if found and int(found["used"] or 0) <= 100 and int(found["days"] or 0) <= 365:
        return value
    raise PydanticCustomError("config_value", "not an alert (credits_used_1..100, overage_started, "
                              "credits_expiring_1d..365d)")


def _web_url(value: str) -> str:
    if value and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise PydanticCustomError("config_value", "not an http:// or https:// URL")
    return value


Text = Annotated[str, Strict()]
AlertName = Annotated[str, Strict(), AfterValidator(_alert_name)]
Alerts = tuple[AlertName, ...]
WebUrl = Annotated[str, Strict(), AfterValidator(_web_url)]
# What a plan alerts on unless plans.yaml says otherwise (docs/delivery.md).
DEFAULT_ALERTS = ("credits_used_80", "credits_used_100", "overage_started", "credits_expiring_7d")
Name = Annotated[str, Strict(), AfterValidator(_config_name)]
Count = Annotated[int, Strict(), Field(ge=0)]
Positive = Annotated[int, Strict(), Field(ge=1)]
Amount = Annotated[Decimal, BeforeValidator(_config_decimal), Field(ge=0)]
Rate = Annotated[Amount, Field(decimal_places=RATE_PLACES)]
ConfigDate = Annotated[date, BeforeValidator(_config_date)]
Instant = Annotated[datetime, BeforeValidator(_config_instant)]


# --- The config objects ------------------------------------------------------------------------


@with_config(ENTRY)
@dataclass(frozen=True)
class ModelRate:
    model: Name
    effective_from: ConfigDate
    input_usd_per_1k: Rate
    output_usd_per_1k: Rate
    degrade_to: Name | None = None


@with_config(ENTRY)
@dataclass(frozen=True)
class ActionTier:
    action: Name
    credits: Count
    tokens_per_credit: Positive | None = None

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


@with_config(ENTRY)
@dataclass(frozen=True)
class RateLimits:
    concurrent: Positive = 10
    requests_per_minute: Positive = 60
    burst_multiplier: Amount = Decimal(1)
    burst_seconds: Count = 0


@dataclass(frozen=True)
class Plan:
    plan: str
    monthly_fee: Decimal
    included_credits: int
    overage_credit_price: Decimal | None
    rollover_max_credits: int
    rollover_expires_after_months: int
    rate_limits: RateLimits
    alerts: tuple[str, ...] = DEFAULT_ALERTS

    @property
    def unit_price(self):
        """Plan grant unit price as an exact fraction (SPEC §3)."""
        from fractions import Fraction

        if not self.monthly_fee or not self.included_credits:
            return Fraction(0)
        return Fraction(self.monthly_fee) / self.included_credits


@with_config(ENTRY)
@dataclass(frozen=True)
class Customer:
    org_id: Name
    name: Name
    plan: Name
    start_date: ConfigDate
    tax_rate: Amount = Decimal(0)
    email: Text = ""
    address: Text = ""
    webhook_url: WebUrl = ""  # where its alerts are POSTed (Standard Webhooks), none if empty
    alerts: Alerts | None = None  # None: its plan's


@with_config(ENTRY)
@dataclass(frozen=True)
class CreditPurchase:
    purchase_id: Name
    org_id: Name
    purchased_at: Instant
    credits: Positive
    price: Amount
    expires_after_months: Positive


@with_config(ENTRY)
@dataclass(frozen=True)
class PlanChange:
    """From 00:00 UTC of `effective_from`, the customer is on `plan`; None ends the
    subscription (a cancellation, SPEC §7)."""

    org_id: Name
    effective_from: ConfigDate
    plan: Name | None


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

    def only(self, orgs: set[str]) -> BillingConfig:
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

    def alerts_of(self, org_id: str) -> tuple[str, ...]:
        """The alerts a customer gets: its own list, else its current (or last) plan's."""
        own = self.customers[org_id].alerts
        return self.last_plan(org_id).alerts if own is None else own

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


# --- The files' schemas and the checks across entries ------------------------------------------


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _rule_error(loc: tuple, message: str) -> ValidationError:
    """A broken rule across entries, reported at `loc` like any other field error."""
    error = PydanticCustomError("config_rule", "{rule}", {"rule": message})
    return ValidationError.from_exception_data("config", [InitErrorDetails(type=error, loc=loc, input=None)])


def _refuse_repeats(entries: list, section: str, keys: tuple[str, ...]) -> None:
    """Refuse the second entry of `section` with the same values of `keys` as an earlier one."""
    first: dict[tuple, int] = {}
    for n, entry in enumerate(entries):
        values = tuple(getattr(entry, key) for key in keys)
        seen = first.setdefault(values, n)
        if seen != n:
            listed = " ".join(f"{key} {_shown(value)}" for key, value in zip(keys, values))
            raise _rule_error((section, n, keys[-1]), f"{listed} is listed twice (first as {section} entry {seen + 1})")


class _PriceBookFile(_Schema):
    currency: Name = "USD"
    target_credit_to_cost_ratio: Amount = Decimal("3.0")
    models: list[ModelRate]
    actions: list[ActionTier]

    @model_validator(mode="after")
    def _rows_are_distinct_and_known(self) -> _PriceBookFile:
        _refuse_repeats(self.models, "models", ("model", "effective_from"))
        _refuse_repeats(self.actions, "actions", ("action",))
        names = {r.model for r in self.models}
        for n, rate in enumerate(self.models):
            if rate.degrade_to is not None and rate.degrade_to not in names:
                raise _rule_error(("models", n, "degrade_to"), f"unknown model {rate.degrade_to!r} (not in models)")
        return self

    def price_book(self) -> PriceBook:
        return PriceBook(self.currency, self.target_credit_to_cost_ratio, tuple(self.models), tuple(self.actions))


class _Rollover(_Schema):
    max_credits: Count = 0
    expires_after_months: Positive = 1


class _PlanEntry(_Schema):
    """A plan as plans.yaml writes it (rollover nested)."""

    plan: Name
    monthly_fee: Amount
    included_credits: Count
    overage_credit_price: Amount | None = None
    rollover: _Rollover = _Rollover()
    rate_limits: RateLimits = RateLimits()
    alerts: Alerts = DEFAULT_ALERTS

    def to_plan(self) -> Plan:
        return Plan(self.plan, self.monthly_fee, self.included_credits, self.overage_credit_price,
                    self.rollover.max_credits, self.rollover.expires_after_months, self.rate_limits, self.alerts)


class _PlansFile(_Schema):
    plans: list[_PlanEntry]

    @model_validator(mode="after")
    def _names_are_distinct(self) -> _PlansFile:
        _refuse_repeats(self.plans, "plans", ("plan",))
        return self


def _named_after_org(entry: Any) -> Any:
    """A customer without a `name` is called by its org_id."""
    if isinstance(entry, dict) and "name" not in entry and "org_id" in entry:
        return {**entry, "name": entry["org_id"]}
    return entry


class _CustomersFile(_Schema):
    customers: list[Annotated[Customer, BeforeValidator(_named_after_org)]]
    credit_purchases: list[CreditPurchase] = []
    plan_changes: list[PlanChange] = []

    @model_validator(mode="after")
    def _entries_are_distinct_and_known(self) -> _CustomersFile:
        _refuse_repeats(self.customers, "customers", ("org_id",))
        _refuse_repeats(self.credit_purchases, "credit_purchases", ("purchase_id",))
        orgs = {c.org_id: c for c in self.customers}
        for n, purchase in enumerate(self.credit_purchases):
            _check_purchase(purchase, n, orgs)
        for n in range(len(self.plan_changes)):
            _check_plan_change(self.plan_changes, n, orgs)
        return self


def _check_purchase(purchase: CreditPurchase, n: int, customers: dict[str, Customer]) -> None:
    """A purchase of a known customer, not before its start_date (docs/ledger.md)."""
    customer = customers.get(purchase.org_id)
    if customer is None:
        raise _rule_error(("credit_purchases", n, "org_id"), f"unknown org {purchase.org_id!r} (not in customers)")
    if purchase.purchased_at.date() < customer.start_date:
        raise _rule_error(("credit_purchases", n, "purchased_at"),
                          f"before {purchase.org_id}'s start_date {customer.start_date}")


def _check_plan_change(changes: list[PlanChange], n: int, customers: dict[str, Customer]) -> None:
    """SPEC §7: a change of a known customer after its start_date, the only one of that customer on
    that date, and not after its cancellation (its plan is checked with plans.yaml)."""
    change, loc = changes[n], ("plan_changes", n)
    customer = customers.get(change.org_id)
    if customer is None:
        raise _rule_error(loc + ("org_id",), f"unknown org {change.org_id!r} (not in customers)")
    if change.effective_from <= customer.start_date:
        raise _rule_error(loc + ("effective_from",), f"on or before {change.org_id}'s start_date "
                          f"{customer.start_date}: a change takes effect after the start")
    others = [(m, c) for m, c in enumerate(changes) if m != n and c.org_id == change.org_id]
    twin = next((m for m, c in others if m < n and c.effective_from == change.effective_from), None)
    if twin is not None:
        raise _rule_error(loc + ("effective_from",), f"a second change of {change.org_id} on "
                          f"{change.effective_from} (the first is plan_changes entry {twin + 1})")
    ended = next((m for m, c in others if c.plan is None and c.effective_from < change.effective_from), None)
    if ended is not None:
        raise _rule_error(loc + ("effective_from",), f"after {change.org_id}'s cancellation from "
                          f"{changes[ended].effective_from} (plan_changes entry {ended + 1})")


class _ConfigFolder(_Schema):
    price_book: _PriceBookFile = Field(alias="pricebook.yaml")
    plans: _PlansFile = Field(alias="plans.yaml")
    customers: _CustomersFile = Field(alias="customers.yaml")

    @model_validator(mode="after")
    def _plans_are_known(self) -> _ConfigFolder:
        names = [p.plan for p in self.plans.plans]
        for section in ("customers", "plan_changes"):
            for n, entry in enumerate(getattr(self.customers, section)):
                if entry.plan is not None and entry.plan not in names:
                    raise _rule_error(("customers.yaml", section, n, "plan"),
                                      f"unknown plan {entry.plan!r} (plans.yaml has {', '.join(names)})")
        return self

    def billing_config(self, fingerprint: str) -> BillingConfig:
        files = self.customers
        return BillingConfig(self.price_book.price_book(), {p.plan: p.to_plan() for p in self.plans.plans},
                             {c.org_id: c for c in files.customers}, tuple(files.credit_purchases),
                             fingerprint, tuple(files.plan_changes))


def load_config(folder: str | Path) -> BillingConfig:
    """Read and validate pricebook.yaml, plans.yaml and customers.yaml from `folder`."""
    folder = Path(folder)
    documents, digest = [], hashlib.sha256()
    for name in CONFIG_FILES:
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"{name}: missing in {folder} (the BILLING_CONFIG folder)")
        text = path.read_bytes()
        digest.update(name.encode() + b"\0" + text + b"\0")
        documents.append(read_yaml(text, name))
    return validate_documents(_ConfigFolder, documents).billing_config(digest.hexdigest())


# --- One message for the first failure ---------------------------------------------------------

# The fields that name an entry of each list in messages: "customers entry 2 (org_id 'acme')".
_ENTRY_NAMES = {"customers": ("org_id",), "plans": ("plan",), "models": ("model", "effective_from"),
                "actions": ("action",), "credit_purchases": ("purchase_id",),
                "plan_changes": ("org_id", "effective_from", "plan")}
_PROBLEMS = {
    "missing": "required",
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "list_type": "must be a list",
    "model_type": "must be a mapping",
    "dataclass_type": "must be a mapping",
    "string_too_short": "must not be empty",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "finite_number": "must be a finite number",
    "decimal_max_places": "has more than {decimal_places} decimal places",
}
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")


@functools.cache
def _adapter(schema: Any) -> TypeAdapter:
    return TypeAdapter(schema)


def validate_documents(schema: Any, documents: list[YamlDocument]) -> Any:
    """The documents, keyed by name, validated against `schema`; or one ConfigError for the first
    failure (in document order, then line order) naming file, entry, field and line."""
    by_name = {d.name: d for d in documents}
    try:
        return _adapter(schema).validate_python({d.name: d.data for d in documents})
    except ValidationError as exc:
        first = min(exc.errors(), key=lambda error: _position(error, list(by_name), by_name[error["loc"][0]]))
        raise ConfigError(_message(first, by_name[first["loc"][0]], schema)) from None


def _position(error: dict, names: list[str], document: YamlDocument) -> tuple:
    """Where an error sorts: by file, entry and line; in one entry, a missing field after the
    others (a misspelt key is the cause of its field missing)."""
    path = error["loc"][1:]
    entry, line = _line(document, path[:-1]) or 0, _line(document, path) or 0
    return names.index(error["loc"][0]), entry, error["type"] == "missing", line


def _line(document: YamlDocument, path: tuple) -> int | None:
    """The line of `path`, or of its nearest enclosing key or item (None without lines)."""
    while path not in document.lines and path:
        path = path[:-1]
    return document.lines.get(path)


def _message(error: dict, document: YamlDocument, schema: Any) -> str:
    """customers.yaml: customers entry 2 (org_id 'acme'), field `start_date`: not a date: '2026-13-01' (line 9)"""
    path = error["loc"][1:]
    entries, names, node = [], [], document.data
    for step in path:
        node = node[step] if isinstance(node, (dict, list)) and _has(node, step) else None
        if isinstance(step, int):
            entries.append(_entry_label(".".join(names) or "list", step, node))
            names = []
        else:
            names.append(str(step))
    place = ", ".join(entries + ([f"field `{'.'.join(names)}`"] if names else []))
    line = _line(document, path)
    problem = _problem(error, schema, error["loc"]) + (f" (line {line})" if line else "")
    return f"{document.name}: {place}: {problem}" if place else f"{document.name}: {problem}"


def _has(node: dict | list, step: Any) -> bool:
    return step in node if isinstance(node, dict) else isinstance(step, int) and 0 <= step < len(node)


def _entry_label(section: str, index: int, entry: Any) -> str:
    keys = [k for k in _ENTRY_NAMES.get(section, ()) if isinstance(entry, dict) and k in entry]
    named = ", ".join(f"{k} {_shown(entry[k])}" for k in keys)
    return f"{section} entry {index + 1}" + (f" ({named})" if named else "")


def _problem(error: dict, schema: Any, loc: tuple) -> str:
    kind = error["type"]
    if kind in _UNKNOWN:
        return _unknown_field(schema, loc)
    if kind not in _PROBLEMS:
        text = error["msg"] if kind.startswith("config_") else error["msg"][:1].lower() + error["msg"][1:]
    else:
        text = _PROBLEMS[kind].format(**error.get("ctx", {}))
    if kind in ("missing", "config_rule"):
        return text
    return text + (", got " if text.startswith("must") else ": ") + _shown(error["input"])


def _shown(value: Any) -> str:
    """A value as the YAML wrote it, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value) if isinstance(value, str) else str(value)


def _unknown_field(schema: Any, loc: tuple) -> str:
    known = list(_fields_of(_type_at(schema, loc[:-1])))
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"did you mean `{close[0]}`?" if close else "known: " + ", ".join(known)
    return f"unknown field ({hint})"


def _type_at(schema: Any, loc: tuple) -> Any:
    """The schema type at `loc` (a field, a list item or a mapping value)."""
    kind = schema
    for step in loc:
        kind = _bare(kind)
        kind = typing.get_args(kind)[-1] if typing.get_origin(kind) in (list, dict) else _fields_of(kind).get(step)
    return _bare(kind)


def _bare(kind: Any) -> Any:
    """`kind` without Annotated[...] and `| None`."""
    while typing.get_origin(kind) in (Annotated, typing.Union, types.UnionType):
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    return kind


def _fields_of(kind: Any) -> dict[str, Any]:
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return {f.alias or name: f.annotation for name, f in kind.model_fields.items()}
    if is_dataclass(kind):
        hints = typing.get_type_hints(kind, include_extras=True)
        return {f.name: hints[f.name] for f in fields(kind)}
    return {}
