"""Exceptions: every failed call raises a :class:`KvDbError` carrying the gRPC status code and the server's message."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Type

import grpc


class KvDbError(Exception):
    """A call the server (or the channel) refused. ``code`` is the ``grpc.StatusCode``, ``details`` the message."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Optional[Tuple[Any, ...]] = None) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.trailing_metadata: Tuple[Any, ...] = tuple(trailing_metadata or ())

    @staticmethod
    def from_rpc_error(error: grpc.RpcError) -> "KvDbError":
        """The KvDbError subclass for an RpcError (sync or asyncio)."""
        code_of = getattr(error, "code", None)
        details_of = getattr(error, "details", None)
        trailing_of = getattr(error, "trailing_metadata", None)
        code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
        details = details_of() if callable(details_of) else str(error)
        try:
            trailing = trailing_of() if callable(trailing_of) else None
        except Exception:  # noqa: BLE001 - some errors carry none
            trailing = None
        if code is None:
            code = grpc.StatusCode.UNKNOWN
        cls = _BY_CODE.get(code, KvDbError)
        return cls(code, details or "", tuple(trailing) if trailing else None)


class InvalidArgumentError(KvDbError):
    """INVALID_ARGUMENT: bad shapes, dtypes, ids."""


class NotFoundError(KvDbError):
    """NOT_FOUND: unknown model, context or tenant."""


class AlreadyExistsError(KvDbError):
    """ALREADY_EXISTS: e.g. a model name with a different schema."""


class UnauthenticatedError(KvDbError):
    """UNAUTHENTICATED: missing or invalid API key."""


class PermissionDeniedError(KvDbError):
    """PERMISSION_DENIED: the key may not do this (e.g. tenant administration without an admin key)."""


class ResourceExhaustedError(KvDbError):
    """RESOURCE_EXHAUSTED: a quota, the CPU tier, or too many failed authentications."""


class FailedPreconditionError(KvDbError):
    """FAILED_PRECONDITION."""


class UnavailableError(KvDbError):
    """UNAVAILABLE: the server cannot be reached."""


_BY_CODE: Dict[grpc.StatusCode, Type[KvDbError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}
