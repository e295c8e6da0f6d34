"""Request and response bodies of the knowledge, test console and unanswered-questions API.

Validators raise ``ValueError(N_(msgid))``; the error handler turns them into translated field messages.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bot_runtime.i18n import N_
from control_plane.bots.schemas import check_text

SourceKind = Literal["text", "faq", "file", "url"]
SourceStatus = Literal["queued", "processing", "ready", "failed"]

TITLE_MAX = 300
TEXT_MAX = 500_000
QUESTION_MAX = 1_000
ANSWER_MAX = 5_000
FAQ_ITEMS_MAX = 1_000
URL_MAX = 2_000
MAX_PAGES_LIMIT = 200
SYNC_HOURS_MAX = 24 * 30

Title = Annotated[str, Field(max_length=TITLE_MAX), AfterValidator(check_text)]
Question = Annotated[str, Field(min_length=1, max_length=QUESTION_MAX), AfterValidator(check_text)]
Answer = Annotated[str, Field(min_length=1, max_length=ANSWER_MAX), AfterValidator(check_text)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError(N_("This field is required."))
    return value.strip()


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextSourceCreate(_Body):
    """Plain text (Markdown headings, lists and tables are understood)."""

    title: Title = ""
    text: Annotated[
        str, Field(min_length=1, max_length=TEXT_MAX), AfterValidator(check_text), AfterValidator(_not_blank)
    ]


class FaqItem(_Body):
    """One question with its answer."""

    question: Annotated[Question, AfterValidator(_not_blank)]
    answer: Annotated[Answer, AfterValidator(_not_blank)]


class FaqSourceCreate(_Body):
    """Questions with answers, typed in a form (a CSV/XLSX with a question,answer header goes to ``/files``)."""

    items: list[FaqItem] = Field(min_length=1, max_length=FAQ_ITEMS_MAX)
    title: Title = ""


class FaqItemUpdate(_Body):
    """A change to one Q&A pair; a field left out keeps its value."""

    question: Annotated[Question, AfterValidator(_not_blank)] | None = None
    answer: Annotated[Answer, AfterValidator(_not_blank)] | None = None

    @model_validator(mode="after")
    def _something(self) -> FaqItemUpdate:
        if self.question is None and self.answer is None:
            raise ValueError(N_("Change the question, the answer or both."))
        return self


class UrlSourceCreate(_Body):
    """A web page, or with ``crawl`` the pages of its site (same site only, robots.txt respected)."""

    url: Annotated[str, Field(min_length=1, max_length=URL_MAX), AfterValidator(check_text), AfterValidator(_not_blank)]
    crawl: bool = False
    max_pages: int | None = Field(default=None, ge=1, le=MAX_PAGES_LIMIT)


class ScheduleUpdate(_Body):
    """How often a website source is read again: every N hours, or never (null)."""

    sync_interval_hours: int | None = Field(ge=1, le=SYNC_HOURS_MAX)


class SourceQueued(BaseModel):
    """A source accepted for ingestion; poll the list (or the source) for its progress."""

    id: uuid.UUID
    status: SourceStatus


class SourceOut(BaseModel):
    """A knowledge source as the list shows it. ``error`` is already translated; ``chunks`` counts its passages."""

    id: uuid.UUID
    kind: SourceKind
    title: str
    status: SourceStatus
    error: str | None
    progress: int
    chunks: int
    updated_at: datetime


class SourceList(BaseModel):
    items: list[SourceOut]
    total: int


class ChunkOut(BaseModel):
    """One passage of a source, as retrieval sees it."""

    position: int
    kind: str
    title: str
    language: str | None
    text: str


class SourceDetail(SourceOut):
    """A source with what the owner may check: the extracted text (a preview), its chunks and its Q&A pairs."""

    created_at: datetime
    url: str | None
    filename: str | None
    crawl: bool
    max_pages: int | None
    sync_interval_hours: int | None
    last_synced_at: datetime | None
    text: str
    text_truncated: bool
    faq_items: list[FaqItem]
    chunk_items: list[ChunkOut]


class AskRequest(_Body):
    """A test-console question; pass the ``conversation_id`` of the previous answer to ask a follow-up."""

    question: Annotated[
        str, Field(min_length=1, max_length=4_000), AfterValidator(check_text), AfterValidator(_not_blank)
    ]
    conversation_id: uuid.UUID | None = None


class AskSource(BaseModel):
    """A passage retrieval found: its source, the passage text and its retrieval score."""

    source_id: str
    title: str
    snippet: str
    score: float


class AskResponse(BaseModel):
    answer: str
    sources: list[AskSource]
    fallback: bool
    conversation_id: uuid.UUID


class UnansweredQuestion(BaseModel):
    """Customers' questions that got the fallback answer, grouped by their normalised text."""

    question: str
    count: int
    last_asked_at: datetime


class UnansweredList(BaseModel):
    items: list[UnansweredQuestion]
    total: int


class UnansweredAnswer(_Body):
    """Turn an unanswered question into a Q&A pair of the bot's knowledge base."""

    question: Annotated[Question, AfterValidator(_not_blank)]
    answer: Annotated[Answer, AfterValidator(_not_blank)]


class AbuseEntryOut(BaseModel):
    """A message the guardrails refused. ``direction`` is ``in`` for a customer's message, ``out`` for an answer."""

    id: uuid.UUID
    channel: str
    direction: str
    reason: str
    matched: str | None
    text: str
    created_at: datetime


class AbuseLog(BaseModel):
    items: list[AbuseEntryOut]
    total: int
