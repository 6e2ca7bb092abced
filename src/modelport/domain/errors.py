"""Typed errors of the core. Each face maps them to its own wire format in one place (its `errors` module)."""

from __future__ import annotations


class ModelportError(Exception):
    """Base of every error the core raises on purpose. `status` is the HTTP status a face should use by default."""

    status: int = 400
    code: str = "BadRequest"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(ModelportError):
    """The request is malformed or breaks a rule; `field` names the offending field when there is one."""

    status = 400
    code = "InvalidInput"


class NotFound(ModelportError):
    status = 404
    code = "NotFound"


class AlreadyExists(ModelportError):
    status = 409
    code = "AlreadyExists"


class Conflict(ModelportError):
    """The resource exists but its state forbids the operation (e.g. deleting something in use)."""

    status = 409
    code = "Conflict"


class Unauthenticated(ModelportError):
    status = 401
    code = "Unauthenticated"


class Forbidden(ModelportError):
    status = 403
    code = "Forbidden"


class MethodNotAllowed(ModelportError):
    status = 405
    code = "MethodNotAllowed"


class PayloadTooLarge(ModelportError):
    status = 413
    code = "PayloadTooLarge"


class UnsupportedMediaType(ModelportError):
    status = 415
    code = "UnsupportedMediaType"


class NotReady(ModelportError):
    """The resource exists but cannot serve yet (loading, scaling from zero past the wait limit)."""

    status = 503
    code = "NotReady"


class Timeout(ModelportError):
    """The request ran past its deadline (MODELPORT_REQUEST_TIMEOUT_S): the model, a replica or the client was too
    slow. Nothing is left waiting for it."""

    status = 504
    code = "Timeout"


class InternalError(ModelportError):
    """A fault of modelport itself (a bug), not of the request: logged with its traceback, answered as a 500."""

    status = 500
    code = "InternalError"
