"""What the routes read from the app: settings, admission control, API keys and the model's readiness."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from vreyesam.runtime.http.admission import Admission
from vreyesam.runtime.http.auth import ApiKeys, presented_key
from vreyesam.runtime.http.errors import ApiError
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import Settings


@dataclass
class ModelState:
    """Filled in once by the loader thread; read by the routes."""

    segmenter: Segmenter | None = None
    failed: bool = False

    def ready(self) -> Segmenter:
        if self.segmenter is None:
            raise ApiError(503, "model_not_ready", "model is not ready", {"Retry-After": "5"})
        return self.segmenter


@dataclass(frozen=True)
class EdgeState:
    settings: Settings
    admission: Admission
    api_keys: ApiKeys | None
    model: ModelState = field(default_factory=ModelState)

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeState:
        admission = Admission(
            max_running=settings.max_concurrency, max_waiting=settings.max_queue, timeout_s=settings.queue_timeout_s
        )
        api_keys = ApiKeys.from_file(settings.api_keys_file) if settings.api_keys_file is not None else None
        return cls(settings=settings, admission=admission, api_keys=api_keys)

    def check_api_key(self, request: Request) -> None:
        """ApiError 401 unless keys are off or the request presents one of them."""
        if self.api_keys is None:
            return
        key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
        if not self.api_keys.allows(key):
            raise ApiError(401, "unauthorized", "unauthorized", {"WWW-Authenticate": "Bearer"})
