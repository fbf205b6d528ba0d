"""The contract between the `train_hasher` flow and a training method.

A method module ``pipeline/training/<method>.py`` defines ``METHOD: TrainingMethod``. The flow calls
``prepare`` once (data loading or caching; Ray work happens here), then ``train`` once per bit length (each
call saves one model under ``models/<model_id>/``), then ``extra_report`` (e.g. an ablation). Every return
value is small and JSON-able: paths, counts, metrics, per-epoch loss lists.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import pydantic

from hashing.bits import check_bits
from hashing.encoders import OpenClipEncoderConfig
from hashing.methods.progress import EpochCallback
from pipeline.extract import ExtractConfig
from pipeline.ray_runtime import RayConfig
from pipeline.sampling import SamplingConfig
from pipeline.store import StoreLayout, validate_name

METHODS = ("dsmhn", "clip4hashing")


class TrainRunConfig(pydantic.BaseModel):
    """One `train_hasher` run: a method, a collection to learn from, and the bit lengths to train."""

    method: Literal["dsmhn", "clip4hashing"]
    collection: str
    store: str | None = None
    bits: list[int] = pydantic.Field(default_factory=lambda: [64])
    model_prefix: str | None = pydantic.Field(
        default=None, description="Models are saved under the name '<prefix>-<bits>b' (an alias of the newest "
                                  "version, whose id adds a content digest); default prefix '<method>-<collection>'."
    )
    encoder: OpenClipEncoderConfig = OpenClipEncoderConfig()
    sampling: SamplingConfig = SamplingConfig()
    options: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="Method hyper-parameters, validated by the method's own options model."
    )
    seed: int = 0
    extract: ExtractConfig = ExtractConfig()
    ray: RayConfig = RayConfig()

    @pydantic.field_validator("collection")
    @classmethod
    def _valid_collection(cls, value: str) -> str:
        return validate_name(value, "collection")

    @pydantic.field_validator("bits")
    @classmethod
    def _valid_bits(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("give at least one bit length")
        for n_bits in value:
            check_bits(n_bits)
        return sorted(set(value))

    def model_name(self, n_bits: int) -> str:
        """The alias a model of ``n_bits`` is saved under; its version id is ``<name>-<digest>``."""
        return validate_name(f"{self.model_prefix or f'{self.method}-{self.collection}'}-{n_bits}b", "model name")


@dataclass
class TrainedModel:
    model_id: str
    n_bits: int
    metrics: dict[str, Any] = field(default_factory=dict)  # held-out retrieval metrics, JSON-able
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch losses ("total", terms…)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrainingMethod(Protocol):
    name: str

    def prepare(self, layout: StoreLayout, config: TrainRunConfig) -> dict[str, Any]:
        """Load or build the training data (Ray work goes here); return small facts about it."""

    def train(self, layout: StoreLayout, config: TrainRunConfig, prepared: dict[str, Any], n_bits: int,
              on_epoch: EpochCallback | None = None) -> TrainedModel:
        """Train and save one model of ``n_bits``; return its metrics and loss history. ``on_epoch`` hears of
        every finished epoch (for progress shown in the Prefect UI)."""

    def extra_report(
        self, layout: StoreLayout, config: TrainRunConfig, prepared: dict[str, Any], models: list[TrainedModel]
    ) -> tuple[dict[str, Any], list[str]]:
        """Extra metrics and markdown lines for the report (e.g. an ablation); may return ({}, [])."""


def training_method(name: str) -> TrainingMethod:
    if name not in METHODS:
        raise ValueError(f"unknown training method {name!r}; known: {', '.join(METHODS)}")
    return importlib.import_module(f"pipeline.training.{name}").METHOD
