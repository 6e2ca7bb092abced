"""Typed exceptions raised by the client, one per kind of failure a caller may want to handle."""

from __future__ import annotations


class ModelportAPIError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.field = field


class InvalidRequestError(ModelportAPIError):
    """400: the request broke a rule; `field` names the offending field."""


class AuthenticationError(ModelportAPIError):
    """401: missing, unknown or revoked token."""


class PermissionDeniedError(ModelportAPIError):
    """403."""


class NotFoundError(ModelportAPIError):
    """404."""


class ConflictError(ModelportAPIError):
    """409: a duplicate name, or a state that forbids the operation."""


class PayloadTooLargeError(ModelportAPIError):
    """413."""


class ServiceUnavailableError(ModelportAPIError):
    """503: not ready yet (a deployment still starting)."""


class TimeoutError(ModelportAPIError):  # noqa: A001 - the client's own, raised by wait_* helpers
    """A wait_* helper gave up before the resource reached the wanted state."""


_BY_STATUS = {400: InvalidRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
              409: ConflictError, 413: PayloadTooLargeError, 503: ServiceUnavailableError}


def error_for(status: int, message: str, field: str | None = None) -> ModelportAPIError:
    return _BY_STATUS.get(status, ModelportAPIError)(status, message, field)
