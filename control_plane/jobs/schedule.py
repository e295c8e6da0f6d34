"""Periodic jobs: (dotted function path, interval in seconds). Each feature adds its entries here.

Each job loops over tenants itself, so one tenant's failure never stops the rest.
"""

from __future__ import annotations

PERIODIC: list[tuple[str, int]] = [
    ("control_plane.channels.tasks.check_telegram_webhooks", 600),
    # Website knowledge sources whose re-sync interval has passed (intervals are whole hours).
    ("control_plane.knowledge.tasks.resync_due_sources", 900),
    # Runtime configs whose after-commit publication was lost (outbox), or whose Redis document is missing.
    ("control_plane.runtimes.tasks.publish_pending", 60),
    # Mail the SMTP server refused or never got (a no-op without SMTP_HOST).
    ("control_plane.accounts.tasks.retry_mail", 60),
]
