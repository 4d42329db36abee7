"""Every error the API can answer, mapped once: exception -> (status, code, message, headers).

The handlers and the raw ASGI middleware both answer through `error_answer` and `json_error_body`, so a
status, a code and the JSON shape `{"error": {"code", "message"}}` are defined here and nowhere else.
Messages are short and fixed or come from our own domain errors (which never hold paths or input bytes);
anything unexpected is a bare 500, logged by type only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from vreyesam.runtime.http.admission import Overloaded
from vreyesam.runtime.media.decode import ImageInputError, ImageTooLarge, UnsupportedFormat
from vreyesam.runtime.model.procedure import InvalidRequest, PromptOutsideImage

log = logging.getLogger("vreyesam.server")

CLIENT_CLOSED_REQUEST = 499  # the common log convention for "client closed request"
RETRY_AFTER_S = 1  # what a turned-away caller is told to wait (also Ray Serve's backpressure answer)
# Statuses Starlette (or, on the cluster path, Ray Serve's proxy) answers itself -> our codes.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    500: "internal_error",
}


# Every code -> the closed set of outcomes the metrics count requests by (telemetry.metrics.OUTCOMES).
OUTCOME_OF_CODE = {
    "invalid_parameter": "invalid_input",
    "missing_image": "invalid_input",
    "bad_request": "invalid_input",
    "not_acceptable": "invalid_input",
    "body_too_large": "too_large",
    "image_too_large": "too_large",
    "undecodable_image": "undecodable",
    "unsupported_media_type": "unsupported",
    "unsupported_format": "unsupported",
    "unauthorized": "unauthorized",
    "not_found": "not_found",
    "method_not_allowed": "not_found",
    "overloaded": "overloaded",
    "model_loading": "not_ready",
    "model_not_ready": "not_ready",
    "model_failed": "not_ready",
    "client_closed_request": "client_closed",
    "request_timeout": "timeout",
}


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    code: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    detail: str = ""  # a finer outcome than the code's (e.g. `queue_timeout` of `overloaded`)

    @property
    def outcome(self) -> str:
        return self.detail or OUTCOME_OF_CODE.get(self.code, "internal")


class ApiError(Exception):
    """Raised by the HTTP edge itself (parameters, content type, auth, readiness)."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.answer = ErrorAnswer(status, code, message, dict(headers or {}))


class BodyTooLarge(Exception):
    """The request body is over the cap; raised while it streams in (see body_limit)."""


def body_too_large(max_body_bytes: int) -> ErrorAnswer:
    return ErrorAnswer(413, "body_too_large", f"request body is larger than {max_body_bytes} bytes")


def uploads_busy() -> ErrorAnswer:
    """The bodies in flight fill the server's memory budget for them: this one is refused, not buffered."""
    return ErrorAnswer(
        503, "overloaded", "server is busy receiving other uploads, retry later", {"Retry-After": str(RETRY_AFTER_S)}
    )


def body_too_slow(timeout_s: float) -> ErrorAnswer:
    return ErrorAnswer(408, "request_timeout", f"the request body did not arrive within {timeout_s:g} s")


def unavailable() -> ErrorAnswer:
    """A request that got no answer from the part that should have made it (a Ray Serve replica that died)."""
    return ErrorAnswer(
        503, "unavailable", "the request could not be completed, retry", {"Retry-After": str(RETRY_AFTER_S)}
    )


def _image_status(exc: ImageInputError) -> int:
    if isinstance(exc, UnsupportedFormat):
        return 415
    if isinstance(exc, ImageTooLarge):
        return 413
    return 422


def _validation(exc: RequestValidationError) -> ErrorAnswer:
    errors = exc.errors()
    location = errors[0].get("loc", ()) if errors else ()
    name = str(location[-1]) if location else "request"
    return ErrorAnswer(422, "invalid_parameter", f"invalid value for parameter '{name}'")


def error_answer(exc: BaseException) -> ErrorAnswer:
    """The answer for any exception raised while handling a request."""
    if isinstance(exc, ApiError):
        return exc.answer
    if isinstance(exc, ImageInputError):
        return ErrorAnswer(_image_status(exc), exc.code, exc.message)
    if isinstance(exc, PromptOutsideImage | InvalidRequest):
        return ErrorAnswer(422, "invalid_parameter", str(exc))
    if isinstance(exc, Overloaded):
        log.info("request turned away", extra={"fields": {"reason": exc.reason}})
        detail = "queue_timeout" if exc.reason == "queue_timeout" else ""
        return ErrorAnswer(
            503, "overloaded", "server is busy, retry later", {"Retry-After": str(RETRY_AFTER_S)}, detail
        )
    if isinstance(exc, RequestValidationError):
        return _validation(exc)
    if isinstance(exc, HTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return ErrorAnswer(exc.status_code, code, code.replace("_", " "), dict(exc.headers or {}))
    if isinstance(exc, ClientDisconnect):
        # The caller hung up mid-upload: nobody reads this answer, and it is not a server error.
        return ErrorAnswer(CLIENT_CLOSED_REQUEST, "client_closed_request", "client closed the request")
    log.error("unhandled error: %s", type(exc).__name__)
    return ErrorAnswer(500, "internal_error", "internal server error")


def json_error_body(answer: ErrorAnswer) -> bytes:
    return json.dumps({"error": {"code": answer.code, "message": answer.message}}, separators=(",", ":")).encode()
