"""One error shape for every refusal: ``{"error": <type>, "detail": ...}``, by status.

Bad input is a 4xx naming what is wrong (FastAPI's field-level list stays the 422's
``detail``); the broker's state is a 503 or 504; only a bug in the gateway is a 500, and even
that answers in this shape, without a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from aclbus.codec import EncodeError
from aclbus.errors import (
    ACLBusError,
    ACLDecodeError,
    BackendClosed,
    CapabilityError,
    ConfigurationError,
    ConsumerLimitReached,
    HopLimitExceeded,
    InvalidIdentifier,
    InvalidPayload,
    MessageTooLarge,
    NoResponders,
    NoStream,
    PermissionDenied,
    PublishTimeout,
    RequestTimeout,
    StreamFull,
)
from aclbus.redaction import redact

__all__ = ["BUS_ERROR_STATUS", "ErrorBody", "install_error_handlers", "json_responses", "responses"]

log = logging.getLogger("aclbus.gateway")


class ErrorBody(BaseModel):
    """What every error response holds.

    Attributes:
        error: The kind of error: an aclbus exception's name (``NoResponders``), or
            ``ValidationError``, ``Unauthorized``, ``Forbidden``, ``NotFound``,
            ``PayloadTooLarge``, ``NotReady``, ``InternalError``.
        detail: What was wrong: a sentence, or FastAPI's list of field errors for a 422.
    """

    error: str
    detail: Any = Field(description="A sentence, or (422) a list of field errors.")


BUS_ERROR_STATUS: Final[tuple[tuple[type[Exception], int], ...]] = (
    (PermissionDenied, status.HTTP_403_FORBIDDEN),
    (MessageTooLarge, status.HTTP_413_CONTENT_TOO_LARGE),  # HeadersTooLarge too
    (NoResponders, status.HTTP_503_SERVICE_UNAVAILABLE),
    (RequestTimeout, status.HTTP_504_GATEWAY_TIMEOUT),
    (PublishTimeout, status.HTTP_504_GATEWAY_TIMEOUT),
    (BackendClosed, status.HTTP_503_SERVICE_UNAVAILABLE),
    (StreamFull, status.HTTP_503_SERVICE_UNAVAILABLE),
    (NoStream, status.HTTP_503_SERVICE_UNAVAILABLE),
    (ConsumerLimitReached, status.HTTP_503_SERVICE_UNAVAILABLE),
    (CapabilityError, status.HTTP_501_NOT_IMPLEMENTED),
    (InvalidIdentifier, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (InvalidPayload, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (EncodeError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (ACLDecodeError, status.HTTP_502_BAD_GATEWAY),  # a reply that is no ACL message
    (HopLimitExceeded, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (ConfigurationError, status.HTTP_422_UNPROCESSABLE_CONTENT),  # e.g. an unknown codec
    (ACLBusError, status.HTTP_502_BAD_GATEWAY),
)
"""The HTTP status of each aclbus error, the first match winning (subclasses first)."""

_HTTP_ERROR_NAMES: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    422: "ValidationError",
    503: "NotReady",
}

_DESCRIPTIONS: Final = {
    400: "The body cannot be read as JSON (not UTF-8, say).",
    401: "No bearer token, or one of no known agent.",
    403: "Acting as another agent, or refused by the policy.",
    404: "Not found.",
    409: "A limit is reached (as many webhooks as the agent may have).",
    413: "The body (or the encoded message) is over the limit.",
    422: "The body or a path parameter is invalid (field-level detail).",
    501: "The backend lacks what this needs (a key-value store, say).",
    502: "The broker answered with something unusable.",
    503: "No responder, the broker unreachable, or the gateway not ready.",
    504: "No reply (or no broker ack) in time.",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each code with the `ErrorBody` schema."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}


def json_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses` for a route whose own answer is not JSON (Server-Sent Events).

    Its errors are JSON all the same, and the document must say so rather than give them the
    route's media type.
    """
    schema = {"$ref": "#/components/schemas/ErrorBody"}
    return {
        code: {
            "description": _DESCRIPTIONS[code],
            "content": {"application/json": {"schema": schema}},
        }
        for code in codes
    }


def status_of(exc: ACLBusError) -> int:
    """The HTTP status an aclbus error answers with."""
    for kind, code in BUS_ERROR_STATUS:
        if isinstance(exc, kind):
            return code
    return status.HTTP_502_BAD_GATEWAY


def error_response(
    code: int, error: str, detail: Any, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A response in the one error shape."""
    body = ErrorBody(error=error, detail=detail).model_dump(mode="json")
    return JSONResponse(body, status_code=code, headers=dict(headers) if headers else None)


def _field_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    # FastAPI's own list, minus what would echo the input back: "input" may be a whole body
    # (with whatever secrets a payload holds) and "ctx" may hold exception objects.
    return [
        {key: value for key, value in error.items() if key in ("type", "loc", "msg")}
        for error in errors
    ]


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "ValidationError", _field_errors(exc.errors()))


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error = _HTTP_ERROR_NAMES.get(exc.status_code, "HTTPError")
    headers = exc.headers
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        # Starlette's Allow names the methods of the first route of the path only; a path
        # served by two routes (GET and POST /communication/handlers) has more.
        headers = {**(headers or {}), "Allow": ", ".join(_methods_of(request))}
    return error_response(exc.status_code, error, exc.detail, headers)


def _methods_of(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match is not Match.NONE and route_methods:
            methods.update(route_methods)
    return sorted(methods)


async def _bus(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ACLBusError)
    code = status_of(exc)
    if code >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, redact(str(exc)))
    return error_response(code, type(exc).__name__, redact(str(exc)))


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "InternalError", "the gateway failed; see its log")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` in the `ErrorBody` shape."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(ACLBusError, _bus)
    app.add_exception_handler(Exception, _bug)
