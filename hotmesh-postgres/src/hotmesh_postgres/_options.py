"""Options accepted by every PostgreSQL provider, validated before any I/O (Provider rule 1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hotmesh.providers import invalid_option


class PostgresOptions(BaseModel):
    """Tuning knobs; every default suits a small deployment.

    Attributes:
        pool_min_size: connections kept open per provider.
        pool_max_size: upper bound of the per-provider pool.
        connect_timeout: seconds to wait for the server on ``open()`` and per new connection.
        poll_interval: seconds between safety polls of a blocked stream read; wake-ups come from
            LISTEN/NOTIFY, this only bounds the damage of a lost notification.
        sweep_interval: seconds between bounded sweeps of expired rows (store only; 0 disables).
        sweep_limit: at most this many expired jobs (and cache rows) are deleted per sweep
            batch, so no batch holds long locks; a round repeats full batches to drain a backlog.
        migrate: run pending schema migrations on ``open()``; turn off when a deploy step runs
            ``python -m hotmesh_postgres migrate`` ahead of time.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool_min_size: int = Field(default=1, ge=0, le=100)
    pool_max_size: int = Field(default=10, ge=1, le=1000)
    connect_timeout: float = Field(default=10.0, gt=0, le=600)
    poll_interval: float = Field(default=5.0, gt=0, le=3600)
    sweep_interval: float = Field(default=60.0, ge=0, le=86400)
    sweep_limit: int = Field(default=500, ge=1, le=100_000)
    migrate: bool = True


def parse_options(provider: str, options: Mapping[str, Any] | None) -> PostgresOptions:
    """Validate ``options``; a bad one raises ConfigError (never a pydantic error)."""
    try:
        parsed = PostgresOptions.model_validate(dict(options or {}))
    except ValidationError as exc:
        raise invalid_option(provider, exc) from None
    if parsed.pool_min_size > parsed.pool_max_size:
        raise invalid_option(
            provider, ValueError("pool_min_size must not exceed pool_max_size")
        )
    return parsed
