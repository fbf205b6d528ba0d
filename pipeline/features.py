"""Cached clip and caption embeddings (float16), keyed by video fingerprint.

Layout: ``features/<encoder_id>/<collection>/<sampling_tag>/run-<key>/`` for clip embeddings and
``features/<encoder_id>/<collection>/text/run-<key>/`` for caption embeddings. A video whose fingerprint is in
a committed run is never decoded again for the same encoder and sampling; a changed file gets a new
fingerprint and is extracted again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.sampling import SamplingConfig
from pipeline.shards import committed_runs, content_key, iter_run_tables
from pipeline.store import StoreLayout


def sampling_tag(config: SamplingConfig) -> str:
    """Directory name that pins the sampling used for a set of clip features."""
    return f"{config.mode}-k{config.frames_per_clip}-s{config.clip_seconds:g}-{content_key([config.model_dump_json()])[:8]}"


def clip_feature_dir(layout: StoreLayout, encoder_id: str, collection: str, sampling: SamplingConfig) -> Path:
    return layout.features_dir(encoder_id, collection) / sampling_tag(sampling)


def text_feature_dir(layout: StoreLayout, encoder_id: str, collection: str) -> Path:
    return layout.features_dir(encoder_id, collection) / "text"


# What readers of clip features load; a part may also hold a ``thumbnail`` column (pipeline/thumbnails.py), which
# only publishing reads.
CLIP_FEATURE_COLUMNS = ["video_id", "fingerprint", "clip_idx", "t_start", "t_end", "embedding"]


def clip_feature_schema(dim: int, thumbnails: bool = False) -> pa.Schema:
    fields = [
        ("video_id", pa.string()),
        ("fingerprint", pa.string()),
        ("clip_idx", pa.int32()),
        ("t_start", pa.float64()),
        ("t_end", pa.float64()),
        ("embedding", pa.list_(pa.float16(), dim)),
    ]
    return pa.schema(fields + ([("thumbnail", pa.binary())] if thumbnails else []))


def text_feature_schema(dim: int) -> pa.Schema:
    return pa.schema([("caption", pa.string()), ("embedding", pa.list_(pa.float16(), dim))])


def embedding_array(embeddings: np.ndarray) -> pa.FixedSizeListArray:
    values = np.ascontiguousarray(embeddings, dtype=np.float16)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def embeddings_from_column(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float32 [N, D] from a fixed-size-list float16 column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dim = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)


def cached_fingerprints(feature_dir: Path) -> dict[str, str]:
    """video_id → fingerprint for every video with clip features in a committed run (newest wins)."""
    cached: dict[str, str] = {}
    for _, manifest in committed_runs(feature_dir):
        for video_id, fingerprint in manifest.get("videos", []):
            cached.setdefault(video_id, fingerprint)
    return cached


def cached_failures(feature_dir: Path) -> dict[str, dict]:
    """video_id → {video_id, fingerprint, error} of videos whose decoding failed in a committed run."""
    failed: dict[str, dict] = {}
    for _, manifest in committed_runs(feature_dir):
        for failure in manifest.get("failures", []):
            if "fingerprint" in failure:
                failed.setdefault(failure["video_id"], failure)
    return failed


def load_clip_features(feature_dir: Path, wanted: dict[str, str]) -> pa.Table | None:
    """Clip feature rows of the wanted (video_id → fingerprint) videos, each taken from its newest run."""
    remaining = dict(wanted)
    tables = []
    for run_dir, manifest in committed_runs(feature_dir):
        in_run = {vid for vid, fp in manifest.get("videos", []) if remaining.get(vid) == fp}
        if not in_run:
            continue
        for table in iter_run_tables(run_dir, manifest, columns=CLIP_FEATURE_COLUMNS):
            mask = pc.is_in(table["video_id"], value_set=pa.array(sorted(in_run), pa.string()))
            tables.append(table.filter(mask))
        for vid in in_run:
            remaining.pop(vid)
        if not remaining:
            break
    if not tables:
        return None
    table = pa.concat_tables(tables)
    return table.sort_by([("video_id", "ascending"), ("clip_idx", "ascending")])


def load_text_features(text_dir: Path, captions: list[str]) -> dict[str, np.ndarray]:
    wanted = set(captions)
    found: dict[str, np.ndarray] = {}
    for run_dir, manifest in committed_runs(text_dir):
        for table in iter_run_tables(run_dir, manifest):
            embeddings = embeddings_from_column(table["embedding"])
            for caption, embedding in zip(table["caption"].to_pylist(), embeddings):
                if caption in wanted and caption not in found:
                    found[caption] = embedding
    return found


def video_level_embeddings(clip_table: pa.Table) -> tuple[list[str], np.ndarray]:
    """Mean of each video's clip embeddings, L2-normalised: the video-level representation."""
    video_ids = clip_table["video_id"].to_pylist()
    embeddings = embeddings_from_column(clip_table["embedding"])
    order: dict[str, int] = {}
    for vid in video_ids:
        order.setdefault(vid, len(order))
    sums = np.zeros((len(order), embeddings.shape[1]), dtype=np.float64)
    np.add.at(sums, np.fromiter((order[v] for v in video_ids), dtype=np.int64, count=len(video_ids)), embeddings)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return list(order), (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def ensure_text_features(text_dir: Path, captions: list[str], encode_text, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Embeddings of ``captions``, encoding (and committing) only those not cached yet."""
    from pipeline.shards import ShardRunWriter

    unique = sorted(set(captions))
    found = load_text_features(text_dir, unique)
    missing = [caption for caption in unique if caption not in found]
    if missing:
        embeddings = np.concatenate(
            [encode_text(missing[i : i + batch_size]) for i in range(0, len(missing), batch_size)]
        )
        writer = ShardRunWriter(text_dir, content_key(missing))
        if not writer.is_committed:
            writer.write(pa.table({"caption": pa.array(missing, pa.string()), "embedding": embedding_array(embeddings)}))
            writer.commit({"kind": "text_features", "captions": len(missing)})
        else:
            writer.abandon()
        found.update(zip(missing, embeddings.astype(np.float16).astype(np.float32)))
    return found


@dataclass
class CollectionFeatures:
    """A collection's current catalog and what the feature cache holds for its ok videos (one encoder + sampling)."""

    catalog: pa.Table
    clips: pa.Table | None  # clip feature rows of the videos that have them; None when no video has
    videos: dict[str, str]  # video_id → fingerprint of the ok videos with cached clip features
    missing: list[dict]  # ok catalog rows without cached clip features for this encoder + sampling
    texts: dict[str, np.ndarray]  # caption → embedding, for the cached captions of ok videos


def load_collection_features(
    layout: StoreLayout, collection: str, encoder_id: str, sampling: SamplingConfig
) -> CollectionFeatures:
    """Read a collection's catalog and its cached clip + caption features; decodes and encodes nothing."""
    from pipeline.catalog import read_catalog
    from pipeline.plan import ok_rows

    catalog = read_catalog(layout, collection)
    if catalog is None:
        raise FileNotFoundError(
            f"collection '{collection}' has no catalog under {layout.root}; "
            f"run 'reelhash index SOURCE --collection {collection}' first"
        )
    rows = ok_rows(catalog)
    wanted = {r["video_id"]: r["fingerprint"] for r in rows}
    clips = load_clip_features(clip_feature_dir(layout, encoder_id, collection, sampling), wanted)
    present = set(clips["video_id"].to_pylist()) if clips is not None else set()
    texts = load_text_features(text_feature_dir(layout, encoder_id, collection), [r["caption"] for r in rows if r["caption"]])
    return CollectionFeatures(
        catalog=catalog,
        clips=clips,
        videos={vid: fp for vid, fp in wanted.items() if vid in present},
        missing=[r for r in rows if r["video_id"] not in present],
        texts=texts,
    )
