"""What the dashboard needs from the client library (`cli.client.Client` has it all)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from backend.protocol import JobObject
from cli.client import Subscription


class Backend(Protocol):
    """The calls the dashboard's screens make."""

    url: str

    async def submit(self, job_type: int | str, data: str) -> JobObject: ...
    async def status(self, job_id: str) -> JobObject: ...
    async def result(self, job_id: str) -> str: ...
    def follow(
        self, job: JobObject | str, timeout: float | None = None
    ) -> AsyncIterator[JobObject]: ...
    async def cancel(self, job_id: str) -> JobObject: ...
    async def types(self) -> list[dict[str, Any]]: ...
    def subscribe(self, limit: int = 1000) -> Subscription: ...
