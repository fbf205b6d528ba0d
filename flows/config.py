"""Run configuration of the flows, as pydantic models (also the Prefect flow parameters)."""

from __future__ import annotations

from typing import Literal

import pydantic

from hashing.bits import check_bits
from hashing.encoders import OpenClipEncoderConfig
from pipeline.extract import ExtractConfig
from pipeline.ray_runtime import RayConfig
from pipeline.sampling import SamplingConfig
from pipeline.store import validate_name


class IndexRunConfig(pydantic.BaseModel):
    """Everything one `index_collection` run needs; defaults suit a laptop or a 2-core CI box."""

    source: str = pydantic.Field(description="Directory, glob, or manifest (.parquet/.csv with a `uri` column).")
    collection: str
    index: str | None = pydantic.Field(default=None, description="Index to publish to; defaults to the collection name.")
    store: str | None = pydantic.Field(default=None, description="Store root; default $REELHASH_STORE or ./reelhash-data.")
    encoder: OpenClipEncoderConfig = OpenClipEncoderConfig()
    sampling: SamplingConfig = SamplingConfig()
    method: Literal["itq", "lsh"] = "itq"
    bits: int = 64
    model: str | None = pydantic.Field(default=None, description="Use this saved model instead of fitting one.")
    seed: int = 0
    max_failure_rate: float = pydantic.Field(default=0.5, ge=0.0, le=1.0,
                                             description="Fail the run when more files than this fraction fail.")
    extract: ExtractConfig = ExtractConfig()
    ray: RayConfig = RayConfig()
    publish: bool = True

    @pydantic.field_validator("collection", "index")
    @classmethod
    def _valid_name(cls, value: str | None, info: pydantic.ValidationInfo) -> str | None:
        return None if value is None else validate_name(value, info.field_name)

    @pydantic.field_validator("bits")
    @classmethod
    def _valid_bits(cls, value: int) -> int:
        check_bits(value)
        return value

    @property
    def index_name(self) -> str:
        return self.index or self.collection
