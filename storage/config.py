"""Where the lake and its catalog live."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LakeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: str = Field("./lake", description="fsspec URL of the lake: a local folder or s3://bucket/prefix")
    catalog: str | None = Field(None, description="DuckDB catalog file; default: catalog.duckdb beside a local lake")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="passed to fsspec/s3fs as given (endpoint_url, key, secret, anon: true, client_kwargs: {...})",
    )
