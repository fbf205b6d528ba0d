"""Tests for flows/config.py: the run configuration of the index_collection flow."""

from __future__ import annotations

import pydantic
import pytest

from flows.config import IndexRunConfig
from hashing.encoders import OpenClipEncoderConfig
from pipeline.sampling import SamplingConfig


def test_defaults_suit_a_small_machine():
    config = IndexRunConfig(source="videos/", collection="news")
    assert config.index is None and config.index_name == "news"
    assert (config.method, config.bits, config.seed, config.publish) == ("itq", 64, 0, True)
    assert config.max_failure_rate == 0.5
    assert config.encoder == OpenClipEncoderConfig()
    assert config.sampling == SamplingConfig()
    assert config.store is None and config.model is None
    assert config.extract.max_encoder_actors is None  # sized from the cluster


def test_index_name_overrides_the_collection():
    assert IndexRunConfig(source="s", collection="news", index="archive").index_name == "archive"


def test_nested_sections_from_plain_dicts():
    # What the CLI (and a Prefect deployment's JSON parameters) pass.
    config = IndexRunConfig(
        source="s", collection="c",
        encoder={"arch": "reelhash-tiny", "allow_random_weights": True, "device": "cpu"},
        sampling={"mode": "keyframe", "clip_seconds": 2.0, "frames_per_clip": 4},
        extract={"max_encoder_actors": 2},
        ray={"local_num_cpus": 4},
    )
    assert config.encoder.arch == "reelhash-tiny" and config.encoder.allow_random_weights
    assert config.sampling == SamplingConfig(mode="keyframe", clip_seconds=2.0, frames_per_clip=4)
    assert config.extract.max_encoder_actors == 2 and config.ray.local_num_cpus == 4


def test_json_round_trip():
    config = IndexRunConfig(source="s", collection="c", index="i", bits=128, method="lsh",
                            sampling={"mode": "keyframe"}, encoder={"pretrained": "openai"})
    assert IndexRunConfig.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize("field", ["collection", "index"])
@pytest.mark.parametrize("bad", ["", "../escape", "a/b", ".hidden", "x" * 129])
def test_unsafe_names_are_rejected(field, bad):
    values = {"source": "s", "collection": "c", field: bad}
    with pytest.raises(pydantic.ValidationError, match=f"invalid {field} name"):
        IndexRunConfig(**values)


@pytest.mark.parametrize("bits", [16, 24, 2048])
def test_valid_bit_lengths(bits):
    assert IndexRunConfig(source="s", collection="c", bits=bits).bits == bits


@pytest.mark.parametrize("bits", [0, 8, 12, 100, 4096])
def test_invalid_bit_lengths_say_what_is_allowed(bits):
    with pytest.raises(pydantic.ValidationError, match="multiple of 8"):
        IndexRunConfig(source="s", collection="c", bits=bits)


@pytest.mark.parametrize(
    "values",
    [
        {"method": "pca"},
        {"max_failure_rate": 1.5},
        {"max_failure_rate": -0.1},
        {"encoder": {"arch": "ViT-B-32", "unknown_option": 1}},
        {"encoder": {"pretrained": "openai", "checkpoint_path": "/x.pt"}},
        {"sampling": {"frames_per_clip": 0}},
    ],
)
def test_invalid_values_are_rejected(values):
    with pytest.raises(pydantic.ValidationError):
        IndexRunConfig(source="s", collection="c", **values)


def test_source_and_collection_are_required():
    with pytest.raises(pydantic.ValidationError, match="collection"):
        IndexRunConfig(source="s")
    with pytest.raises(pydantic.ValidationError, match="source"):
        IndexRunConfig(collection="c")
