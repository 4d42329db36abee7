"""The one mapping from exceptions to answers: each error the API can give, with its status and code."""

from __future__ import annotations

import json

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from vreyesam.runtime.http.admission import Overloaded
from vreyesam.runtime.http.errors import ApiError, ErrorAnswer, error_answer, json_error_body
from vreyesam.runtime.media.decode import ImageTooLarge, UndecodableImage, UnsupportedFormat
from vreyesam.runtime.model.procedure import PromptOutsideImage


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (UnsupportedFormat("unsupported image format"), 415, "unsupported_format"),
        (UndecodableImage("the png data is truncated"), 422, "undecodable_image"),
        (ImageTooLarge("image is 9000 pixels wide"), 413, "image_too_large"),
        (PromptOutsideImage("parameter 'prompts' holds a point outside the image"), 422, "invalid_parameter"),
        (Overloaded("queue_full"), 503, "overloaded"),
        (ApiError(406, "not_acceptable", "Accept: image/png needs exactly one output"), 406, "not_acceptable"),
        (HTTPException(404), 404, "not_found"),
        (HTTPException(405), 405, "method_not_allowed"),
        (RequestValidationError([{"loc": ("query", "points"), "msg": "x", "type": "int"}]), 422, "invalid_parameter"),
        (ClientDisconnect(), 499, "client_closed_request"),
        (RuntimeError("/secret/path exploded"), 500, "internal_error"),
    ],
)
def test_each_exception_has_one_answer(exc: Exception, status: int, code: str) -> None:
    answer = error_answer(exc)
    assert (answer.status, answer.code) == (status, code)
    assert "/secret" not in answer.message


def test_domain_messages_pass_through_and_internal_ones_do_not() -> None:
    assert error_answer(UndecodableImage("the png data is truncated")).message == "the png data is truncated"
    assert error_answer(RuntimeError("boom")).message == "internal server error"
    named = error_answer(RequestValidationError([{"loc": ("query", "threshold"), "msg": "x", "type": "float"}]))
    assert named.message == "invalid value for parameter 'threshold'"


def test_overload_says_when_to_retry() -> None:
    assert error_answer(Overloaded("queue_timeout")).headers == {"Retry-After": "1"}


def test_the_json_shape() -> None:
    body = json_error_body(ErrorAnswer(413, "body_too_large", "request body is larger than 10 bytes"))
    assert body == b'{"error":{"code":"body_too_large","message":"request body is larger than 10 bytes"}}'
    assert json.loads(body) == {"error": {"code": "body_too_large", "message": "request body is larger than 10 bytes"}}
