"""The one exception tree of callgate.

Every error a caller can see is a :class:`CallgateError` with a stable ``code`` and an HTTP ``status``.
The native API renders them as RFC 9457 problem documents; each dialect renders them in its vendor's
shape, in one place. Third-party errors are translated at the boundary (``raise X(...) from exc``).
"""

from __future__ import annotations

from typing import Any


class CallgateError(Exception):
    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(self, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None) -> None:
        self.detail = detail or self.title
        self.errors = errors
        super().__init__(self.detail)


class ValidationFailed(CallgateError):
    status, code, title = 422, "validation_error", "The request is not valid"


class BadRequest(CallgateError):
    status, code, title = 400, "bad_request", "Bad request"


class MalformedJSON(BadRequest):
    code, title = "malformed_json", "The request body is not valid JSON"


class PayloadTooLarge(CallgateError):
    status, code, title = 413, "payload_too_large", "The request body is too large"


class Unauthenticated(CallgateError):
    status, code, title = 401, "unauthenticated", "A valid API key is required"


class InvalidToken(Unauthenticated):
    code, title = "invalid_token", "The call token is not valid"


class TokenExpired(InvalidToken):
    code, title = "token_expired", "The call token has expired"


class TokenReused(InvalidToken):
    code, title = "token_reused", "The call token has already been used"


class TokenMismatch(InvalidToken):
    code, title = "token_mismatch", "The call token belongs to another call or transport"


class Forbidden(CallgateError):
    status, code, title = 403, "forbidden", "This key may not do that"


class OriginNotAllowed(Forbidden):
    code, title = "origin_not_allowed", "The request's Origin is not allowed for this key"


class InsufficientCredits(Forbidden):
    code, title = "insufficient_credits", "The team has no call credits left"


class NotFound(CallgateError):
    status, code, title = 404, "not_found", "Not found"


class NoRecording(NotFound):
    """The call exists but has no recording (none was made, it is not kept yet, or it is gone)."""

    title = "This call has no recording"


class MethodNotAllowed(CallgateError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Conflict(CallgateError):
    status, code, title = 409, "conflict", "Conflict"


class IllegalTransition(Conflict):
    code, title = "illegal_transition", "The call cannot move to that state"


class RateLimited(CallgateError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(
        self, detail: str | None = None, *, retry_after: int, limit: int, remaining: int = 0
    ) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.limit = limit
        self.remaining = remaining


class ConcurrencyLimited(CallgateError):
    status, code, title = 429, "concurrency_limit", "The team has too many live calls"


class ServiceUnavailable(CallgateError):
    status, code, title = 503, "unavailable", "The service is not ready"


class NodeBusy(ServiceUnavailable):
    """This node refuses new calls for now (admission control); try again after ``retry_after`` s."""

    code, title = "node_busy", "This node is too busy for another call"

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class StorageUnavailable(ServiceUnavailable):
    """The recording storage (an S3-compatible service) cannot be reached or refused the request."""

    code, title = "storage_unavailable", "The recording storage is not available"


class CarrierFailed(ServiceUnavailable):
    """The carrier (Twilio's REST API, a SIP trunk) refused or failed a request callgate made."""

    status, code, title = 502, "carrier_failed", "The carrier failed the request"


class ConfigError(CallgateError):
    code, title = "config_error", "Invalid configuration"


class AgentMisconfigured(CallgateError):
    """A call's engines could not be built from its agent's settings (the call has been ended)."""

    code, title = "agent_misconfigured", "The agent is misconfigured"


class ProviderError(CallgateError):
    """A speech or language engine failed (bad answer, crash, protocol error)."""

    status, code, title = 502, "provider_error", "A speech or language provider failed"


class ProviderUnavailable(ProviderError):
    """The engine is not installed, not configured, or its server cannot be reached."""

    status, code, title = 503, "provider_unavailable", "The provider is not available"


class ProviderTimeout(ProviderError):
    status, code, title = 504, "provider_timeout", "The provider did not answer in time"


class ProviderAuthFailed(ProviderError):
    code, title = "provider_auth_failed", "The provider rejected its credentials"


class ProviderRateLimited(ProviderError):
    status, code, title = 503, "provider_rate_limited", "The provider is rate limiting requests"
