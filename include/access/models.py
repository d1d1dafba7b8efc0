"""Request bodies of the platform API (pydantic; they are its OpenAPI schemas). Ranges mirror the
Params of the DAGs they trigger, so a bad value is refused with 422 before any run is created."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class Login(BaseModel):
    model_config = _STRICT
    email: str = Field(min_length=3, max_length=255)
    password: str = Field(min_length=1, max_length=1024)


class _Window(BaseModel):
    model_config = _STRICT
    window_start: datetime | None = None
    window_end: datetime | None = None
    min_utility: float | None = Field(None, ge=0)
    min_utility_ratio: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self):
        if self.min_utility is not None and self.min_utility_ratio is not None:
            raise ValueError("give min_utility or min_utility_ratio, not both")
        for name in ("window_start", "window_end"):
            v = getattr(self, name)
            if v is not None and v.tzinfo is None:
                raise ValueError(f"{name} needs a time zone (ISO 8601 with offset, e.g. ...Z)")
        if self.window_start and self.window_end and self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self

    def conf(self) -> dict:
        out = self.model_dump(mode="json", exclude_none=True)
        return out


class MiningRequest(_Window):
    """A mining run of one store (DAG ``mine_store_patterns``); empty fields: the DAG's defaults."""
    min_support: float | None = Field(None, ge=0, le=1)
    max_pattern_length: int | None = Field(None, ge=0, le=100)
    engine: Literal["auto", "local", "spark"] = "auto"


class RoundRequest(_Window):
    """A federated round (DAG ``federated_round``). ``store_ids`` empty: for a coordinator the active
    stores of their region, for an admin every active store with a privacy config."""
    store_ids: list[uuid.UUID] = Field(default_factory=list, max_length=10000)
    min_clients_required: int | None = Field(None, ge=2, le=100000)
    mode: Literal["secure", "local"] = "secure"
    epsilon: float = Field(1.0, gt=0, le=100)
    delta: float = Field(1e-6, gt=0, lt=0.01)
    noise_type: Literal["gaussian", "laplace"] = "gaussian"
    max_pattern_length: int = Field(3, ge=1, le=3)
    top_k: int | None = Field(100, ge=1, le=1000000)
    phase_timeout_minutes: float = Field(5, ge=0.05, le=120)
    dropout_threshold: int | None = Field(None, ge=2, le=100000)

    @model_validator(mode="after")
    def _unique_stores(self):
        if len(set(self.store_ids)) != len(self.store_ids):
            raise ValueError("store_ids must not repeat a store")
        return self


class ConfigUpdate(BaseModel):
    """A new value for a ``server_configs`` row, as text; it must parse as the row's data_type."""
    model_config = _STRICT
    config_value: str = Field(max_length=10000)


# ---------------------------------------------------------------------------------------- responses
class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds")


class Me(BaseModel):
    user_id: uuid.UUID
    role: Literal["store_manager", "regional_coordinator", "admin"]
    store_id: uuid.UUID | None
    region_id: uuid.UUID | None
    token_expires_at: int | None = Field(description="Unix time")


class Revoked(BaseModel):
    revoked: bool


class Store(BaseModel):
    id: uuid.UUID
    name: str
    location: str | None
    region_id: uuid.UUID | None
    is_active: bool | None
    created_at: datetime | None
    updated_at: datetime | None


class StoreDetail(Store):
    files: int
    last_upload: datetime | None
    last_mining: datetime | None


class TransactionFile(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    filename: str
    file_size: int
    file_type: Literal["csv", "json"]
    upload_timestamp: datetime | None
    processing_status: Literal["pending", "processing", "completed", "failed"] | None
    error_message: str | None
    duplicate_of: uuid.UUID | None
    s3_key: str | None
    rejects_url: str | None = Field(None, description="GET it for the rejected transactions (CSV); null: none")


class Uploaded(BaseModel):
    file_id: uuid.UUID
    filename: str
    file_size: int
    file_type: Literal["csv", "json"]
    s3_key: str
    content_sha256: str
    duplicate_of: uuid.UUID | None
    processing_status: Literal["pending"]
    dag_run_id: str | None = Field(description="the ingest_transaction_files run; null: see ingestion_note")
    ingestion_note: str | None = None


class RunStarted(BaseModel):
    dag_run_id: str
    conf: dict


class MiningJob(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    status: str | None
    min_utility: float
    min_support: float
    max_pattern_length: int | None
    engine_path: str | None
    window_start: datetime | None
    window_end: datetime | None
    n_transactions: int | None
    started_at: datetime | None
    completed_at: datetime | None
    execution_time_seconds: float | None
    memory_used_mb: float | None
    patterns_found: int | None
    error_message: str | None


class LocalPattern(BaseModel):
    id: uuid.UUID
    mining_job_id: uuid.UUID
    pattern_items: list[str]
    utility: float
    support: float
    confidence: float
    pattern_length: int
    created_at: datetime | None


class PrivacyConfig(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    epsilon: float
    noise_type: str | None
    hash_patterns: bool | None
    encrypt_patterns: bool
    created_at: datetime | None
    updated_at: datetime | None


class LedgerEntry(BaseModel):
    id: uuid.UUID
    round_id: uuid.UUID | None
    release_name: str
    window_start: datetime
    window_end: datetime
    mode: str
    mechanism: str
    accounting: str
    rho: float
    epsilon: float | None
    delta: float
    epsilon_display: float
    delta_display: float
    status: str
    error_message: str | None
    created_at: datetime
    charged_at: datetime | None
    aborted_at: datetime | None


class Round(BaseModel):
    id: uuid.UUID
    round_number: int
    status: str | None
    region_id: uuid.UUID | None
    mode: str | None
    min_clients_required: int | None
    participating_clients: int | None
    started_at: datetime | None
    completed_at: datetime | None
    duration_seconds: float | None
    patterns_aggregated: int | None
    global_privacy_budget: float | None
    error_message: str | None
    current_phase: str | None
    dag_run_id: str | None


class RoundDetail(Round):
    params: dict | None
    levels: dict | list | None


class GlobalPattern(BaseModel):
    id: uuid.UUID
    pattern_rank: int | None
    pattern_items: list[str]
    aggregated_utility: float
    utility_stddev: float | None
    utility_ci_low: float | None
    utility_ci_high: float | None
    confident: bool
    global_support: float
    contributing_stores: int
    client_coverage_percent: float
    pattern_length: int | None
    created_at: datetime | None


class Config(BaseModel):
    config_key: str
    config_value: str
    data_type: Literal["string", "number", "boolean", "json"]
    description: str | None
    updated_at: datetime | None
    updated_by: uuid.UUID | None
