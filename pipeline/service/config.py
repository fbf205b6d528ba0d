"""Settings of the search service (`reelhash serve`), with the limits every request is checked against."""

from __future__ import annotations

import pydantic

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ServiceConfig(pydantic.BaseModel):
    store: str | None = pydantic.Field(default=None, description="store root; None: $REELHASH_STORE or the default")
    index: str
    host: str = "127.0.0.1"
    port: int = pydantic.Field(default=8000, ge=0, le=65535)
    token: str | None = pydantic.Field(default=None, description="bearer token for everything but /healthz")
    poll_seconds: float = pydantic.Field(default=2.0, ge=0, description="how often CURRENT is checked (0: never)")
    max_query_chars: int = pydantic.Field(default=1000, ge=1)
    max_k: int = pydantic.Field(default=1000, ge=1)
    default_k: int = pydantic.Field(default=10, ge=1)
    max_upload_bytes: int = pydantic.Field(default=64 * 1024 * 1024, ge=1)
    max_upload_seconds: float = pydantic.Field(default=120.0, gt=0, description="longest query video accepted")
    cors_origins: list[str] = pydantic.Field(default_factory=list, description="origins allowed by CORS (none)")

    @pydantic.field_validator("token")
    @classmethod
    def _non_empty_token(cls, value: str | None) -> str | None:
        return value or None

    @property
    def exposed(self) -> bool:
        """Whether the service listens beyond this machine."""
        return self.host not in LOOPBACK_HOSTS
