"""Charts of the monthly margin report, drawn by matplotlib (Agg) as SVG data URIs.

Figures are for reading, not for accounting: amounts become floats only here, at the moment they
are drawn. The same figures give the same bytes (fixed SVG ids, no date in the file).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from decimal import Decimal

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter  # noqa: E402

INK, MUTED, GRID = "#1d2733", "#6b7785", "#e3e7ec"
NAVY, TEAL, SAND, RED, AMBER = "#1f3b5c", "#3d8f8a", "#c9b38a", "#c0392b", "#d68910"
STYLE = {
    "font.family": ["DejaVu Sans", "Noto Sans CJK JP"],
    "font.size": 8.5,
    "axes.edgecolor": GRID,
    "axes.labelcolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlecolor": INK,
    "xtick.color": MUTED,
    "ytick.color": INK,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "svg.fonttype": "none",
    "svg.hashsalt": "billing_pipelines.margin",
}
MIN_TREND_SLOTS = 6  # a short history keeps narrow bars, drawn from the left
WIDTH = 7.0  # inches: the text width of an A4 page with 18 mm margins


def svg_data_uri(figure: Figure) -> str:
    """The figure as a `data:image/svg+xml` URI, byte-for-byte reproducible."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(height: float, columns: int = 1) -> tuple[Figure, list]:
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, columns, figsize=(WIDTH, height), squeeze=False)
    for ax in axes[0]:
        ax.grid(axis="x", color=GRID, linewidth=0.6)
        ax.set_axisbelow(True)
    return figure, list(axes[0])


def _legend_on_top(ax, handles=None, columns: int | None = None) -> None:
    """A legend above the plot (one row unless `columns` says otherwise), clear of the data."""
    handles = handles or ax.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower left", bbox_to_anchor=(0, 1.01),
              ncols=columns or len(handles), borderaxespad=0, handlelength=1.2, columnspacing=1.2)


def _thousands_axis(ax, axis: str = "x") -> None:
    formatter = FuncFormatter(lambda value, _: f"{value:,.0f}")
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(formatter)


def ratio_by_customer(names: Sequence[str], ratios: Sequence[Decimal | None], target: Decimal) -> str:
    """Horizontal bars of each customer's credit-to-cost ratio against the target line; customers
    without COGS (no ratio) are left out."""
    rows = sorted(((r, n) for n, r in zip(names, ratios) if r is not None), key=lambda row: (-row[0], row[1]))
    with plt.rc_context(STYLE):
        figure, (ax,) = _figure(0.6 + 0.24 * max(len(rows), 1))
        values = [float(r) for r, _ in rows]
        colors = [RED if r < target else NAVY for r, _ in rows]
        bars = ax.barh(range(len(rows)), values, color=colors, height=0.62)
        ax.set_yticks(range(len(rows)), [n for _, n in rows])
        ax.invert_yaxis()
        line = ax.axvline(float(target), color=AMBER, linewidth=1.4, linestyle="--", label=f"target {target}×")
        _legend_on_top(ax, [Patch(color=NAVY, label="meets target"), Patch(color=RED, label="below target"), line])
        labels = ax.bar_label(bars, labels=[f"{r}×" for r, _ in rows], padding=3, fontsize=7.5)
        for label, color in zip(labels, colors):
            label.set_color(RED if color == RED else INK)
        ax.set_xlim(0, max([*values, float(target)]) * 1.12)
        ax.set_xlabel("recognized revenue ÷ COGS")
        return svg_data_uri(figure)


def cost_per_credit(
    tiers: Sequence[dict], models: Sequence[dict], revenue_per_credit: Decimal | None, target: Decimal
) -> str:
    """Per action tier the median, p90 and p99 cost per credit; per model the mean; both against
    the highest cost per credit that still meets the target (revenue per credit ÷ target)."""
    with plt.rc_context(STYLE):
        figure, (left, right) = _figure(2.5, columns=2)
        names = [t["action"] for t in tiers]
        for offset, (key, label, color) in enumerate(
            (("median", "median", TEAL), ("p90", "p90", NAVY), ("p99", "p99", SAND))
        ):
            positions = [i + (offset - 1) * 0.26 for i in range(len(tiers))]
            left.barh(positions, [float(t[f"cost_per_credit_{key}"]) for t in tiers], height=0.26,
                      color=color, label=label)
        left.set_yticks(range(len(tiers)), names)
        left.invert_yaxis()
        left.set_title("Cost per credit by action tier (USD)", pad=30)
        right.barh(range(len(models)), [float(m["cost_per_credit"] or 0) for m in models], color=NAVY, height=0.6)
        right.set_yticks(range(len(models)), [m["model"] for m in models])
        right.invert_yaxis()
        right.set_title("Cost per credit by model (USD)", pad=30)
        if revenue_per_credit is not None:
            ceiling = float(revenue_per_credit / target)
            for ax in (left, right):
                ax.axvline(ceiling, color=AMBER, linewidth=1.4, linestyle="--", label=f"highest cost at {target}×")
        for ax in (left, right):
            ax.tick_params(axis="x", labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            _legend_on_top(ax, columns=2)
        figure.tight_layout(w_pad=2.5)
        return svg_data_uri(figure)


def revenue_and_breakage(names: Sequence[str], usage: Sequence[Decimal], breakage: Sequence[Decimal],
                         cogs: Sequence[Decimal]) -> str:
    """Per customer, revenue split into usage and breakage, with COGS beside it."""
    with plt.rc_context(STYLE):
        figure, (ax,) = _figure(0.7 + 0.3 * max(len(names), 1))
        rows = range(len(names))
        ax.barh([r - 0.17 for r in rows], [float(u) for u in usage], height=0.34, color=NAVY, label="usage revenue")
        ax.barh([r - 0.17 for r in rows], [float(b) for b in breakage], left=[float(u) for u in usage],
                height=0.34, color=SAND, label="breakage (expired credits)")
        ax.barh([r + 0.17 for r in rows], [float(c) for c in cogs], height=0.34, color=RED, label="COGS")
        ax.set_yticks(list(rows), list(names))
        ax.invert_yaxis()
        _thousands_axis(ax)
        _legend_on_top(ax)
        return svg_data_uri(figure)


def monthly_trend(months: Sequence[str], revenue: Sequence[Decimal], cogs: Sequence[Decimal],
                  margin_pct: Sequence[Decimal | None]) -> str:
    """Revenue and COGS per closed month (bars) and margin % (line, right axis)."""
    with plt.rc_context(STYLE):
        figure, (ax,) = _figure(2.3)
        ax.grid(axis="x", visible=False)
        ax.grid(axis="y", color=GRID, linewidth=0.6)
        positions = range(len(months))
        ax.bar([p - 0.2 for p in positions], [float(r) for r in revenue], width=0.4, color=NAVY, label="revenue")
        ax.bar([p + 0.2 for p in positions], [float(c) for c in cogs], width=0.4, color=RED, label="COGS")
        ax.set_xticks(list(positions), list(months))
        ax.set_xlim(-0.6, max(len(months), MIN_TREND_SLOTS) - 0.4)
        _thousands_axis(ax, "y")
        line = ax.twinx()
        line.spines["right"].set_visible(True)
        points = [(p, float(m)) for p, m in zip(positions, margin_pct) if m is not None]
        line.plot([p for p, _ in points], [m for _, m in points], color=TEAL, marker="o", linewidth=1.8,
                  label="margin %")
        line.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        line.set_ylim(min([0.0, *(m for _, m in points)]), 100)
        _legend_on_top(ax, ax.get_legend_handles_labels()[0] + line.get_legend_handles_labels()[0])
        ax.set_ylim(0, max([float(v) for v in (*revenue, *cogs)] + [1]) * 1.1)
        return svg_data_uri(figure)


def rate_limit_outcomes(names: Sequence[str], degraded: Sequence[int], rejected: Sequence[int]) -> str:
    """Per customer, the requests the plan limits would have degraded and rejected."""
    with plt.rc_context(STYLE):
        figure, (ax,) = _figure(0.7 + 0.26 * max(len(names), 1))
        rows = range(len(names))
        ax.barh(list(rows), list(degraded), color=AMBER, height=0.6, label="degraded to a cheaper model")
        ax.barh(list(rows), list(rejected), left=list(degraded), color=RED, height=0.6, label="rejected")
        ax.set_yticks(list(rows), list(names))
        ax.invert_yaxis()
        _thousands_axis(ax)
        ax.set_xlabel("requests")
        _legend_on_top(ax)
        return svg_data_uri(figure)
