"""Run configuration of the flows, as pydantic models (also the Prefect flow parameters)."""

from __future__ import annotations

from typing import Literal

import pydantic

from hashing.bits import check_bits
from hashing.encoders import OpenClipEncoderConfig
from pipeline.extract import ExtractConfig
from pipeline.quality_gate import QualityGateSettings
from pipeline.ray_runtime import RayConfig
from pipeline.sampling import SamplingConfig
from pipeline.store import validate_name


class RunSettings(QualityGateSettings):
    """Settings shared by every indexing run; defaults suit a laptop or a 2-core CI box."""

    store: str | None = pydantic.Field(default=None, description="Store root; default $REELHASH_STORE or ./reelhash-data.")
    encoder: OpenClipEncoderConfig = OpenClipEncoderConfig()
    sampling: SamplingConfig = SamplingConfig()
    method: Literal["itq", "lsh"] = "itq"
    bits: int = 64
    model: str | None = pydantic.Field(
        default=None, description="Hash with this saved model. Default: the index's current model, else fit one."
    )
    refit: bool = pydantic.Field(default=False, description="Fit a new model even if the index has one.")
    seed: int = 0
    max_failure_rate: float = pydantic.Field(default=0.5, ge=0.0, le=1.0,
                                             description="Fail the run when more files than this fraction fail.")
    extract: ExtractConfig = ExtractConfig()
    ray: RayConfig = RayConfig()
    publish: bool = True
    wait_seconds: float = pydantic.Field(default=0.0, ge=0.0,
                                         description="Wait this long for another run of the same index to finish.")

    @pydantic.field_validator("bits")
    @classmethod
    def _valid_bits(cls, value: int) -> int:
        check_bits(value)
        return value


class IndexRunConfig(RunSettings):
    """One `index_collection` run: index (or backfill) one collection into an index."""

    source: str = pydantic.Field(description="Directory, glob, or manifest (.parquet/.csv with a `uri` column).")
    collection: str
    index: str | None = pydantic.Field(default=None, description="Index to publish to; defaults to the collection name.")

    @pydantic.field_validator("collection", "index")
    @classmethod
    def _valid_name(cls, value: str | None, info: pydantic.ValidationInfo) -> str | None:
        return None if value is None else validate_name(value, info.field_name)

    @property
    def index_name(self) -> str:
        return self.index or self.collection


class NightlyConfig(RunSettings):
    """One `nightly_reindex` run: every registered collection of an index, incrementally."""

    index: str

    @pydantic.field_validator("index")
    @classmethod
    def _valid_index(cls, value: str) -> str:
        return validate_name(value, "index")

    def for_collection(self, collection: str, source: str) -> IndexRunConfig:
        return IndexRunConfig(**self.model_dump(exclude={"index"}), source=source, collection=collection,
                              index=self.index)
