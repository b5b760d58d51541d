"""The monthly margin report for finance (issue 5), as HTML and PDF, from the stored month close.

Built from the closed month's margin (SPEC §5-6) and credit-tier advisor, the closes of the
months before it for the trend, and the month's rate-limit simulation where it was run. Totals are
the sums of the per-customer figures as printed (so every table foots); margin % and the
credit-to-cost ratio of a total are computed from those sums and rounded half up to 2 places.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import TypeAdapter

from billing_pipelines.config import BillingConfig
from billing_pipelines.invoicing.seller import Seller, load_seller
from billing_pipelines.margin import charts
from billing_pipelines.margin.advisor import TierAdvice, TierAdvisor
from billing_pipelines.margin.report import MarginRow, PlanChanges, plan_changes_in, stored_margin
from billing_pipelines.money import DecimalText, money, round_half_up
from billing_pipelines.paths import resource_dir
from billing_pipelines.periods import month_key, parse_month
from billing_pipelines.ratelimit.simulation import SIMULATION_DATASET
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import duck

TEMPLATE, STYLESHEET, LOGO = "margin_report.html.j2", "margin_report.css", "logo.svg"
TREND_MONTHS = 12
CHART_CUSTOMERS = 30  # per-customer charts show at most this many; the tables show every customer
_AMOUNT = TypeAdapter(DecimalText)  # a simulation amount as read from its table (Decimal, or its text)
SIMULATION_COLUMNS = ("org_id", "requests", "degraded", "rejected", "cogs_saved_usd", "revenue_at_risk")


def _ratio(numerator: Decimal, denominator: Decimal, scale: int = 1) -> Decimal | None:
    """numerator x scale / denominator, exact then rounded half up to 2 places; None over 0."""
    return round_half_up(Fraction(numerator) * scale / Fraction(denominator), 2) if denominator else None


@dataclass(frozen=True)
class MonthTotals:
    """One month's margin summed over its customers."""

    month: str
    revenue: Decimal
    breakage: Decimal
    cogs: Decimal
    gross_margin: Decimal
    customers: int
    below_target: int

    @property
    def margin_pct(self) -> Decimal | None:
        return _ratio(self.gross_margin, self.revenue, 100)

    @property
    def ratio(self) -> Decimal | None:
        return _ratio(self.revenue, self.cogs)

    @property
    def breakage_share(self) -> Decimal | None:
        """Breakage as a percentage of revenue."""
        return _ratio(self.breakage, self.revenue, 100)


def month_totals(month: str, margin: list[MarginRow]) -> MonthTotals:
    """Column sums of a month's margin rows."""
    def total(field: str) -> Decimal:
        return sum((getattr(m, field) for m in margin), Decimal(0))

    return MonthTotals(month, total("revenue"), total("breakage"), total("cogs_usd"), total("gross_margin"),
                       len(margin), sum(m.below_target for m in margin))


@dataclass(frozen=True)
class CustomerMargin:
    """One customer's line of the report."""

    org_id: str
    name: str
    plan: str
    revenue: Decimal
    breakage: Decimal
    cogs: Decimal
    gross_margin: Decimal
    margin_pct: Decimal | None
    ratio: Decimal | None
    below_target: bool
    shortfall: Decimal  # revenue missing to reach the target ratio at this COGS
    costliest_model: str | None

    @property
    def usage_revenue(self) -> Decimal:
        return self.revenue - self.breakage


def customer_margin_line(row: MarginRow, config: BillingConfig, target: Decimal) -> CustomerMargin:
    customer = config.customers.get(row.org_id)
    costliest = max(row.by_model, key=lambda m: (m.cogs_usd, m.model), default=None)
    return CustomerMargin(
        org_id=row.org_id,
        name=customer.name if customer else row.org_id,
        plan=plans_of_month(config, row.org_id, parse_month(row.month)) if customer else "",
        revenue=row.revenue,
        breakage=row.breakage,
        cogs=row.cogs_usd,
        gross_margin=row.gross_margin,
        margin_pct=row.margin_pct,
        ratio=row.credit_to_cost_ratio,
        below_target=row.below_target,
        shortfall=round_half_up(max(row.cogs_usd * target - row.revenue, Decimal(0)), 2),
        costliest_model=costliest.model if costliest else None,
    )


def plans_of_month(config: BillingConfig, org_id: str, month: date) -> str:
    """The customer's plans in `month` in period order ('pro → enterprise'); after its
    cancellation, its last plan and '(ended)'."""
    names = [p.plan.plan for p in config.plan_periods(org_id, month)]
    if not names:
        return f"{config.last_plan(org_id).plan} (ended)"
    return " → ".join(name for i, name in enumerate(names) if i == 0 or names[i - 1] != name)


@dataclass(frozen=True)
class MarginReport:
    """Everything the margin report shows for one month."""

    month: date
    issuer: str  # the company whose margin this is (seller.yaml's name)
    currency: str
    target: Decimal
    totals: MonthTotals
    customers: list[CustomerMargin]
    trend: list[MonthTotals]
    tiers: list[dict]
    models: list[dict]
    revenue_per_credit: Decimal | None
    expired_credits: int
    simulation: list[dict] | None
    plan_changes: PlanChanges
    names: dict[str, str]  # customer names by org_id (the config's)

    @property
    def below_target(self) -> list[CustomerMargin]:
        """Customers below the target ratio, the largest shortfall first."""
        return sorted((c for c in self.customers if c.below_target), key=lambda c: (-c.shortfall, c.org_id))

    @property
    def cost_ceiling(self) -> Decimal | None:
        """The highest cost per credit that meets the target at this month's revenue per credit."""
        if self.revenue_per_credit is None:
            return None
        return round_half_up(Fraction(self.revenue_per_credit) / Fraction(self.target), 6)


def build_margin_report(
    config: BillingConfig, closes: list[dict], simulation: pl.DataFrame | Iterable[dict] | None = None,
    issuer: str = Seller.name,
) -> MarginReport:
    """The report of the last of `closes` (stored month-close documents, oldest first; the earlier
    ones give the trend) for the company `issuer`."""
    close, margins = closes[-1], [stored_margin(c["margin"]) for c in closes]
    advisor = TierAdvisor.model_validate(close["advisor"])
    target = config.price_book.target_credit_to_cost_ratio
    customers = [customer_margin_line(row, config, target) for row in margins[-1]]
    names = {c.org_id: c.name for c in customers}
    return MarginReport(
        month=parse_month(close["month"]),
        issuer=issuer,
        currency=next((i["currency"] for i in close["invoices"]), config.price_book.currency),
        target=target,
        totals=month_totals(close["month"], margins[-1]),
        customers=customers,
        trend=[month_totals(c["month"], m) for c, m in zip(closes, margins)],
        tiers=[_tier_line(t) for t in advisor.by_action],
        models=_model_lines(margins[-1], advisor),
        revenue_per_credit=advisor.revenue_per_credit,
        expired_credits=sum(s["expired"] for s in close["credit_summaries"].values()),
        simulation=None if simulation is None else _simulation_lines(simulation, names),
        plan_changes=plan_changes_in(config, parse_month(close["month"])),
        names={c.org_id: c.name for c in config.customers.values()},
    )


def _tier_line(tier: TierAdvice) -> dict:
    """An advisor row with the credits per event it charges now (on average) and a verdict."""
    per_event = _ratio(Decimal(tier.credits), Decimal(tier.events))
    needed = tier.credits_needed_for_target
    if needed is None or per_event is None:
        verdict = "no revenue per credit"
    elif needed > per_event:
        verdict = f"raise to {needed}"
    else:
        verdict = "meets target"
    return {**tier.model_dump(), "credits_per_event": per_event, "verdict": verdict}


def _model_lines(margin: list[MarginRow], advisor: TierAdvisor) -> list[dict]:
    """Advisor rows per model with the usage revenue the model's credits recognized."""
    revenue: dict[str, Decimal] = {}
    for row in margin:
        for split in row.by_model:
            revenue[split.model] = revenue.get(split.model, Decimal(0)) + split.revenue
    lines = []
    for model in advisor.by_model:
        earned = revenue.get(model.model, Decimal(0))
        lines.append({"model": model.model, "credits": model.credits, "cogs_usd": model.cogs_usd,
                      "revenue": earned, "ratio": _ratio(earned, model.cogs_usd),
                      "cost_per_credit": model.cost_per_credit})
    return lines


def _simulation_lines(simulation: pl.DataFrame | Iterable[dict], names: dict[str, str]) -> list[dict]:
    """Rows of the rate-limit simulation table (columns SIMULATION_COLUMNS) by org_id, amounts as
    Decimal, with the customer's name."""
    if isinstance(simulation, pl.DataFrame):
        rows, columns = simulation.to_dicts(), simulation.columns
    else:
        rows = list(simulation)
        columns = rows[0].keys() if rows else SIMULATION_COLUMNS
    missing = [c for c in SIMULATION_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"margin report: rate-limit simulation lacks column(s) {', '.join(missing)}")
    return [{**{c: r[c] for c in SIMULATION_COLUMNS}, "name": names.get(r["org_id"], r["org_id"]),
             "cogs_saved_usd": _AMOUNT.validate_python(r["cogs_saved_usd"]),
             "revenue_at_risk": _AMOUNT.validate_python(r["revenue_at_risk"])}
            for r in sorted(rows, key=lambda r: r["org_id"])]


def stored_simulation(settings: BillingSettings, month: date) -> pl.DataFrame | None:
    """The `rate_limit_simulation` table stored for `month`, or None where it was not run."""
    warehouse = settings.warehouse()
    paths = warehouse.file_paths(SIMULATION_DATASET, "simulation", [f"month={month_key(month)}"])
    if not paths:
        return None
    con = duck.connect(settings.scratch_dir())
    try:
        return con.sql(f"SELECT * FROM {warehouse.relation(con, paths)} ORDER BY org_id").pl()
    finally:
        con.close()


def load_margin_report(
    settings: BillingSettings, closes: list[dict], simulation: pl.DataFrame | Iterable[dict] | None = None
) -> MarginReport:
    """The report of the last of `closes` (the documents of closed months, oldest first: the
    trend), with the rate-limit simulation: `simulation` where given, else the one stored for
    the month, if any."""
    if simulation is None:
        simulation = stored_simulation(settings, parse_month(closes[-1]["month"]))
    issuer = load_seller(settings.config_dir).name
    return build_margin_report(settings.billing_config(), closes, simulation, issuer)


def _charted(rows: list, key) -> list:
    """`rows` in their order, cut to the CHART_CUSTOMERS largest by `key` where there are more."""
    keep = sorted(range(len(rows)), key=lambda i: key(rows[i]), reverse=True)[:CHART_CUSTOMERS]
    return [rows[i] for i in sorted(keep)]


def report_charts(report: MarginReport) -> dict[str, str]:
    """The report's figures as SVG data URIs, by name. Per-customer charts show at most
    CHART_CUSTOMERS customers: those with the most COGS (ratio), revenue (breakage) or limited
    requests (simulation); the tables list every customer."""
    by_cogs = _charted(report.customers, lambda c: c.cogs)
    by_revenue = _charted(report.customers, lambda c: c.revenue)
    figures = {
        "ratio_by_customer": charts.ratio_by_customer(
            [c.name for c in by_cogs], [c.ratio for c in by_cogs], report.target),
        "revenue_and_breakage": charts.revenue_and_breakage(
            [c.name for c in by_revenue], [c.usage_revenue for c in by_revenue], [c.breakage for c in by_revenue],
            [c.cogs for c in by_revenue]),
        "cost_per_credit": charts.cost_per_credit(report.tiers, report.models, report.revenue_per_credit,
                                                  report.target),
        "trend": charts.monthly_trend([t.month for t in report.trend], [t.revenue for t in report.trend],
                                      [t.cogs for t in report.trend], [t.margin_pct for t in report.trend]),
    }
    if report.simulation:
        limited = _charted(report.simulation, lambda s: s["degraded"] + s["rejected"])
        figures["rate_limits"] = charts.rate_limit_outcomes(
            [s["name"] for s in limited], [s["degraded"] for s in limited], [s["rejected"] for s in limited])
    return figures


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(resource_dir("templates")), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(
        amount=lambda v, places=2: "—" if v is None else f"{round_half_up(v, places):,.{places}f}",
        pct=lambda v: "—" if v is None else f"{money(v)}%",
        times=lambda v: "—" if v is None else f"{money(v)}×",
        signed=lambda v: f"{round_half_up(v, 2):+,.2f}",
        count=lambda v: "—" if v is None else f"{v:,}",
    )
    return env


def margin_report_html(report: MarginReport) -> str:
    """The report as one self-contained HTML page (stylesheet inline, charts as data URIs)."""
    assets = resource_dir("assets")
    logo = "data:image/svg+xml;base64," + base64.b64encode((assets / LOGO).read_bytes()).decode("ascii")
    return _environment().get_template(TEMPLATE).render(
        report=report, month_name=report.month.strftime("%B %Y"), charts=report_charts(report),
        stylesheet=(assets / STYLESHEET).read_text(), logo=logo, chart_limit=CHART_CUSTOMERS,
    )


def margin_report_pdf(html: str) -> bytes:
    """The HTML of `margin_report_html` printed to PDF by WeasyPrint."""
    from weasyprint import HTML

    return HTML(string=html, base_url=str(resource_dir("assets"))).write_pdf()


def report_key(month: date, suffix: str) -> str:
    """Where the report of `month` lives in the warehouse store."""
    return f"reports/margin/{month_key(month)}/margin-report.{suffix}"


def write_margin_report(
    settings: BillingSettings, closes: list[dict], simulation: pl.DataFrame | Iterable[dict] | None = None
) -> tuple[MarginReport, dict[str, str]]:
    """Render the report of the last of `closes` (see load_margin_report) and store its HTML and
    PDF in the warehouse store; returns the report and the stored keys by format."""
    report = load_margin_report(settings, closes, simulation)
    month = parse_month(closes[-1]["month"])
    html = margin_report_html(report)
    store = settings.warehouse().store
    keys = {"html": report_key(month, "html"), "pdf": report_key(month, "pdf")}
    store.write_bytes(keys["html"], html.encode())
    store.write_bytes(keys["pdf"], margin_report_pdf(html))
    return report, keys
