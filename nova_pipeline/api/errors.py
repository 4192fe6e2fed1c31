"""What can go wrong talking to NovaConnect, each error keeping the server's own message.

No error text ever contains the token: messages are built from the status, the request
fingerprint (URL and JSON body) and the response body, never from request headers.
"""

from __future__ import annotations


class NovaApiError(Exception):
    """Base of every error the client raises."""


class AuthError(NovaApiError):
    """401/403: the token is missing, wrong or not allowed. Never retried."""


class RequestRejected(NovaApiError):
    """A redirect or any other 4xx: the request itself is wrong; retrying cannot help."""


class ApiResponseError(NovaApiError):
    """HTTP 200 but the body's `code` is not 200."""


class UnreadableBodyError(NovaApiError):
    """A body no retry can mend: it holds bytes that are not UTF-8, or a lone UTF-16
    surrogate escape (unless NOVA_API_LONE_SURROGATES=replace), neither of them Unicode, so
    neither msgspec nor DuckDB can read it; or it is compressed in a way the client did not
    ask for and cannot undo."""


class CertificateError(NovaApiError):
    """The server's TLS certificate was not accepted: the same on every retry."""


class PageIgnoredError(NovaApiError):
    """The server answered a later page with the same body as the page before it."""


class TooManyPagesError(NovaApiError):
    """A query went past the configured page cap (NOVA_MAX_PAGES)."""


class RetriesExhausted(NovaApiError):
    """A request kept failing with retryable errors until the attempts or deadline ran out."""


class PullStopped(NovaApiError):
    """The client was stopped (`NovaClient.stop`) while it paged: another day of the same
    pull failed, or the run was interrupted. Not an answer of the server."""
