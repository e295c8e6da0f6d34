"""Background job of the accounts feature: retry mail the SMTP server did not take (every minute, jobs.schedule)."""

from __future__ import annotations

from control_plane.jobs.queue import run_async
from control_plane.kit.mail import deliver_due


@run_async
async def retry_mail() -> dict[str, int]:
    return await deliver_due()
