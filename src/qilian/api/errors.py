"""The API's one error type, shared by the app, its routers and the read side."""

from __future__ import annotations


class ApiError(Exception):
    """A client error with an HTTP status, a stable code and a message (answered as ``{"error", "message"}``)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
