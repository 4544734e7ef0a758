"""The API's one error type, shared by the app, its routers and the read side."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A client error with an HTTP status, a stable code and a message (answered as ``{"error", "message"}``,
    plus the ``fields`` when given — e.g. ``oldest_height`` of a 410 ``state_pruned``)."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields: dict[str, Any] = dict(fields or {})
