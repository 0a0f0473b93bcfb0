"""Errors raised by jupyter-deploy, all under one root, mapped from HTTP status in one place."""

from __future__ import annotations

from typing import Any


class DeployError(Exception):
    """Root of every jupyter-deploy error."""

    status: int | None = None

    def __init__(self, message: str, *, reason: str | None = None, status: int | None = None, detail: Any = None):
        super().__init__(message)
        self.message = message
        self.reason = reason
        if status is not None:
            self.status = status
        self.detail = detail

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: a deploy error is a message for the user, not a bug.
        lines = [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self.message}"]
        if isinstance(self.detail, list) and self.detail:
            lines.append("last log lines:")
            lines.extend(f"  {line}" for line in self.detail[-15:])
        return lines


class BundleError(DeployError):
    """A bundle is malformed or fails its checksum."""


class CaptureError(DeployError):
    """The functions or their globals cannot be captured."""


class ConfigError(DeployError):
    """No manager URL or token is configured."""


class ConnectionFailed(DeployError):
    """The manager or service did not answer."""


class TimedOut(ConnectionFailed):
    """No answer came within this client's own timeout (the request may still be running)."""


class BadRequest(DeployError):
    """The request was malformed (400)."""

    status = 400


class Unauthorized(DeployError):
    """No valid token (401)."""

    status = 401


class Forbidden(DeployError):
    """The token's scope does not allow this (403)."""

    status = 403


class NotFound(DeployError):
    """Unknown service, version or entrypoint (404)."""

    status = 404


class Conflict(DeployError):
    """The request conflicts with the current state (409)."""

    status = 409


class PayloadTooLarge(DeployError):
    """The bundle is over the manager's size limit (413)."""

    status = 413


class InvalidInput(DeployError):
    """The input does not fit the entrypoint (422)."""

    status = 422


class TooManyRequests(DeployError):
    """Rate limited (429)."""

    status = 429


class ServiceError(DeployError):
    """The deployed function raised, or the server failed (5xx)."""

    status = 500


class GatewayTimeout(ServiceError):
    """The manager gave up waiting for the service's answer (504); the call may still be running there."""

    status = 504


class BuildFailed(DeployError):
    """A deploy did not reach a running, healthy version."""


class SmokeTestFailed(BuildFailed):
    """An entrypoint failed on the deploy's sample before the version took any traffic; main is unchanged.

    ``entrypoint`` is the runner's account of the failing call: ``kind`` (raised, invalid-input,
    unserialisable), ``error`` and, when it raised, ``frames`` of the user's code and ``traceback``.
    """

    def __init__(self, message: str, *, entrypoint: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.entrypoint = entrypoint or {}

    @property
    def traceback(self) -> str:
        """The function's traceback on the sample (frames of the user's code), with the notebook's source lines."""
        frames = self.entrypoint.get("frames")
        if not frames:
            return str(self.entrypoint.get("traceback") or "")
        import linecache

        lines = ["Traceback (most recent call last):"]
        for frame in frames:
            lines.append(f'  File "{frame.get("file")}", line {frame.get("line")}, in {frame.get("function")}')
            # The service has no copy of a notebook cell's text; this kernel (or the folder on disk) does.
            code = frame.get("code") or linecache.getline(str(frame.get("file")), int(frame.get("line") or 0)).strip()
            if code:
                lines.append(f"    {code}")
        lines.append(str(self.entrypoint.get("error") or ""))
        return "\n".join(lines)

    def _render_traceback_(self) -> list[str]:
        name = self.entrypoint.get("entrypoint") or "an entrypoint"
        lines = [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self.message}"]
        if self.traceback:
            lines.append(f"{name} on the deploy's sample, in the service (the new version is marked failed; "
                         "the main version keeps serving):")
            lines.extend(self.traceback.splitlines())
        return lines


_BY_STATUS: dict[int, type[DeployError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
    429: TooManyRequests,
    504: GatewayTimeout,
}


def error_for_status(status: int, message: str, reason: str | None = None, detail: Any = None) -> DeployError:
    """Build the DeployError subclass that matches an HTTP status."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServiceError if status >= 500 else DeployError
    return cls(message, reason=reason, status=status, detail=detail)
