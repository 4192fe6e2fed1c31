"""The NovaConnect API client (httpx transports, no Dagster import)."""

from nova_pipeline.api.client import (
    ClientConfig,
    Endpoint,
    FetchStats,
    LoneSurrogates,
    NovaClient,
)
from nova_pipeline.api.errors import (
    ApiResponseError,
    AuthError,
    CertificateError,
    NovaApiError,
    PageIgnoredError,
    PullStopped,
    RequestRejected,
    RetriesExhausted,
    TooManyPagesError,
    UnreadableBodyError,
)
from nova_pipeline.api.models import Page, PageRequest
from nova_pipeline.api.retry import RetryPolicy

__all__ = [
    "ApiResponseError",
    "AuthError",
    "CertificateError",
    "ClientConfig",
    "Endpoint",
    "FetchStats",
    "LoneSurrogates",
    "NovaApiError",
    "NovaClient",
    "Page",
    "PageIgnoredError",
    "PageRequest",
    "PullStopped",
    "RequestRejected",
    "RetriesExhausted",
    "RetryPolicy",
    "TooManyPagesError",
    "UnreadableBodyError",
]
