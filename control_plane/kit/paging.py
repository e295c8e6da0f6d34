"""The offset every API listing takes: bounded, because an offset past PostgreSQL's bigint OFFSET is a database
error (a 500), and no listing holds anywhere near this many rows. HTML listings use ``kit.pages.page_number``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

MAX_OFFSET = 1_000_000_000

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
