"""Rate-limit response headers a gateway returns with every answer."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from billing_pipelines.ratelimit.limiter import Decision


def response_headers(decision: Decision) -> dict[str, str]:
    """x-ratelimit-limit/remaining/reset-requests always; retry-after (whole seconds, rounded
    up, at least 1) on a rate or concurrency rejection; x-degraded-from on a degradation."""
    headers = {
        "x-ratelimit-limit-requests": str(decision.limit_requests),
        "x-ratelimit-remaining-requests": str(decision.remaining_requests),
        "x-ratelimit-reset-requests": f"{decision.reset_requests:.3f}s",
    }
    if decision.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(decision.retry_after)))
    if decision.outcome == "degrade":
        headers["x-degraded-from"] = decision.requested_model
    return headers
