"""Periodic jobs: (dotted function path, interval in seconds). Each feature adds its entries here.

Each job loops over tenants itself, so one tenant's failure never stops the rest.
"""

from __future__ import annotations

PERIODIC: list[tuple[str, int]] = []
