"""Ray Data extraction: catalog rows → decode + sample (tasks) → encoder actor pool → clip feature shards.

Decoding runs as stateless Ray tasks straight from the file path and emits only the sampled, already
reduced frames. Encoding runs in an actor pool (``compute=ActorPoolStrategy``) so the model loads once per
actor; ``num_gpus`` is requested only when the cluster has a GPU. The driver streams the results into a
shard run and commits it with a manifest. A video that fails to decode becomes a failure record (it never
fails the dataset) and is reported back for the catalog.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pydantic
import ray
import ray.data

from pydantic import BaseModel

from hashing.encoders import build_media_encoder
from pipeline.decode import DecodeError, Resize
from pipeline.features import clip_feature_schema, embedding_array
from pipeline.ray_runtime import cluster_gpu_count
from pipeline.images import decode_media_clips
from pipeline.sampling import SamplingConfig
from pipeline.shards import ShardRunWriter, content_key

logger = logging.getLogger(__name__)


class ExtractConfig(pydantic.BaseModel):
    """Resources of the extraction stages."""

    encode_batch_size: int = pydantic.Field(default=16, ge=1, description="Clips per encoder call.")
    max_encoder_actors: int = pydantic.Field(default=1, ge=1, description="Upper bound of the encoder actor pool.")
    decode_cpus: float = pydantic.Field(default=0.5, gt=0, description="Logical CPUs per decode task.")
    encoder_cpus: float = pydantic.Field(
        default=2.0, gt=0, description="Logical CPUs per encoder actor (Ray sets its torch threads to this)."
    )
    rows_per_shard: int = pydantic.Field(default=4096, ge=1, description="Clip rows per feature shard file.")


@dataclass
class ExtractResult:
    run_dir: Path | None
    videos_requested: int
    videos_encoded: int
    clips: int
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def decode_video_row(row: dict, sampling: dict, frame_size: int, resize: Resize = "crop") -> Iterator[dict]:
    """One catalog row → one row per clip with its frames, then a failure row with an ``error`` if decoding fails.

    A generator: Ray Data's ``flat_map`` passes clips on as they are decoded, so a long video never holds all
    its clips in memory at once. Clips yielded before a failure are harmless: a failed video is left out of the
    run's manifest, and readers take only the manifest's videos.
    """
    config = SamplingConfig.model_validate(sampling)
    frames_shape = (config.frames_per_clip, frame_size, frame_size, 3)
    base = {"video_id": row["video_id"], "fingerprint": row["fingerprint"]}
    try:
        count = 0
        for plan, frames in decode_media_clips(row["path"], config, frame_size, resize):
            yield {**base, "clip_idx": plan.clip_idx, "t_start": float(plan.t_start), "t_end": float(plan.t_end),
                   "frames": frames, "error": ""}
            count += 1
        if count:
            return
        raise DecodeError("no clip could be sampled from the video")
    except DecodeError as error:
        message = str(error)
    except Exception as error:  # a failure of one file must never fail the whole dataset
        message = f"decode failed: {type(error).__name__}: {error}"
    yield {**base, "clip_idx": -1, "t_start": 0.0, "t_end": 0.0,
           "frames": np.zeros(frames_shape, np.uint8), "error": message.splitlines()[0][:500]}


class ClipEncoderActor:
    """Loads the encoder once; turns batches of decoded clips into float16 embeddings."""

    def __init__(self, encoder_config: dict):
        self.encoder = build_media_encoder(encoder_config)

    def __call__(self, batch: dict) -> dict:
        ok = batch["error"] == ""
        embeddings = np.zeros((len(ok), self.encoder.embed_dim), np.float16)
        if ok.any():
            embeddings[ok] = self.encoder.encode_clips(np.asarray(batch["frames"])[ok]).astype(np.float16)
        out = {key: value for key, value in batch.items() if key != "frames"}
        out["embedding"] = embeddings
        return out


def extract_clip_features(
    rows: list[dict],
    *,
    feature_dir: Path,
    encoder_config: BaseModel,
    frame_size: int,
    resize: Resize = "crop",
    embed_dim: int,
    sampling: SamplingConfig,
    extract: ExtractConfig,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExtractResult:
    """Decode, sample and encode ``rows`` (dicts with video_id, fingerprint, path); commit one feature run.

    ``on_progress(videos_seen, videos_total)`` is called as results stream in (for progress artifacts).
    """
    started = time.monotonic()
    if not rows:
        return ExtractResult(None, 0, 0, 0)
    run_key = content_key(
        [encoder_config.model_dump_json(), sampling.model_dump_json()]
        + sorted(f"{r['video_id']}:{r['fingerprint']}" for r in rows)
    )
    writer = ShardRunWriter(feature_dir, run_key)
    items = [{"video_id": r["video_id"], "fingerprint": r["fingerprint"], "path": r["path"]} for r in rows]
    gpus = cluster_gpu_count()
    dataset = (
        ray.data.from_items(items, override_num_blocks=min(len(items), 64))
        .flat_map(
            decode_video_row,
            fn_kwargs={"sampling": sampling.model_dump(), "frame_size": frame_size, "resize": resize},
            num_cpus=extract.decode_cpus,
        )
        .map_batches(
            ClipEncoderActor,
            fn_constructor_kwargs={"encoder_config": encoder_config.model_dump()},
            batch_size=extract.encode_batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=extract.max_encoder_actors),
            num_cpus=extract.encoder_cpus,
            **({"num_gpus": 1} if gpus > 0 else {}),
        )
    )
    schema = clip_feature_schema(embed_dim)
    failures: dict[str, dict] = {}
    encoded: dict[str, str] = {}
    buffered: list[pa.Table] = []
    buffered_rows = 0
    clips_of: dict[str, int] = {}
    seen: set[str] = set()
    for batch in dataset.iter_batches(batch_size=extract.encode_batch_size, batch_format="numpy"):
        seen.update(str(v) for v in batch["video_id"])
        if on_progress is not None:
            on_progress(len(seen), len(rows))
        ok = batch["error"] == ""
        for video_id, fingerprint, error in zip(batch["video_id"][~ok], batch["fingerprint"][~ok], batch["error"][~ok]):
            failures[str(video_id)] = {"video_id": str(video_id), "fingerprint": str(fingerprint), "error": str(error)}
        if not ok.any():
            continue
        table = pa.table(
            {
                "video_id": pa.array(batch["video_id"][ok].astype(str)),
                "fingerprint": pa.array(batch["fingerprint"][ok].astype(str)),
                "clip_idx": pa.array(batch["clip_idx"][ok].astype(np.int32)),
                "t_start": pa.array(batch["t_start"][ok].astype(np.float64)),
                "t_end": pa.array(batch["t_end"][ok].astype(np.float64)),
                "embedding": embedding_array(batch["embedding"][ok]),
            },
            schema=schema,
        )
        for video_id, fingerprint in zip(table["video_id"].to_pylist(), table["fingerprint"].to_pylist()):
            encoded[video_id] = fingerprint
            clips_of[video_id] = clips_of.get(video_id, 0) + 1
        buffered.append(table)
        buffered_rows += table.num_rows
        if buffered_rows >= extract.rows_per_shard:
            writer.write(pa.concat_tables(buffered))
            buffered, buffered_rows = [], 0
    if buffered:
        writer.write(pa.concat_tables(buffered))
    # A video is only committed when all its clips are in; a failed video has no rows at all.
    for video_id in failures:
        encoded.pop(video_id, None)
    writer.commit(
        {
            "kind": "clip_features",
            "encoder": encoder_config.model_dump(),
            "sampling": sampling.model_dump(),
            "embed_dim": embed_dim,
            "videos": sorted(encoded.items()),
            "failures": sorted(failures.values(), key=lambda item: item["video_id"]),
        }
    )
    return ExtractResult(
        run_dir=writer.run_dir,
        videos_requested=len(rows),
        videos_encoded=len(encoded),
        clips=sum(clips_of.get(video_id, 0) for video_id in encoded),
        failures=sorted(failures.values(), key=lambda item: item["video_id"]),
        seconds=time.monotonic() - started,
    )
