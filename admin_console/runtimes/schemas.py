"""Response bodies of the runtimes admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

LogStream = Literal["stderr", "stdout"]


class RuntimeOut(BaseModel):
    """One tenant runtime as its host last reported it (``runtime_stats_key``), with the operator markers."""

    tenant_id: str
    tenant_name: str | None = Field(description="Display name from the tenants table; None for an unknown id")
    host: str | None = Field(description="The host that runs it, or last ran it")
    state: str = Field(description="starting | running | stopping | stopped | idle | exited | crash-looping | pending")
    pid: int | None
    uptime_seconds: float
    restarts: int
    rss_bytes: int
    last_error: str
    reason: str = Field(description="Why it last stopped (operator stop, no traffic, lease lost …)")
    desired: bool = Field(description="Its plan is active and it has an enabled bot")
    held: bool = Field(description="Stopped by an operator: no host starts it until it is started again")
    idle: bool = Field(description="Stopped for lack of traffic; the next message wakes it")
    leased_by: str | None = Field(description="The host holding its lease right now")
    stale: bool = Field(description="Reported as active, but its host has not written stats for a minute")
    next_retry_at: datetime | None = Field(description="Crash-looping: when its host tries again")
    updated_at: datetime | None


class RuntimePage(BaseModel):
    items: list[RuntimeOut]
    total: int
    limit: int
    offset: int


class RuntimeCommandOut(BaseModel):
    ok: bool
    message: str = Field(description="What happened, in the request's language")
    detail: str = Field(description="The host's own words (English, for operators)")


class RuntimeLogsOut(BaseModel):
    tenant_id: str
    host: str
    stream: LogStream
    lines: list[str]
    error: str = Field(description="Set by the host, e.g. when it has no log file for this tenant")


class HostOut(BaseModel):
    host_id: str
    pid: int
    supervisord_pid: int
    started_at: datetime | None
    heartbeat_at: datetime | None
    heartbeat_age_seconds: float
    runtimes: int = Field(description="Tenants the host holds the lease of")
    states: dict[str, int] = Field(description="Those tenants counted by runtime state")


class HostList(BaseModel):
    items: list[HostOut]
    total: int
