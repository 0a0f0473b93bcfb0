"""The one error type of the manager's API: answered as JSON ``{"message", "reason"}`` with its status."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered as JSON ``{"message", "reason"}`` with an HTTP status (and headers, e.g. Retry-After)."""

    def __init__(self, status: int, message: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = dict(headers or {})
