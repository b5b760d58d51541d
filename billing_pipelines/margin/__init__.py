"""Margin of SPEC §5 per customer and month, and the credit-tier advisor."""

from billing_pipelines.margin.advisor import tier_advice
from billing_pipelines.margin.report import breakage_by_org, customer_margin, margin_report

__all__ = ["breakage_by_org", "customer_margin", "margin_report", "tier_advice"]
