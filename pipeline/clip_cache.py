"""A cache of decoded clips (uint8 pixels) for models that learn from pixels, e.g. the DSMHN video stream.

Layout: ``clips/<sampling_tag>-s<size>/<collection>/run-<key>/part-*.parquet`` + ``_MANIFEST.json``. Each row
is one clip: ``video_id``, ``fingerprint``, ``clip_idx``, ``t_start``, ``t_end`` and ``frames`` (the
``uint8 [K, S, S, 3]`` array as raw bytes; the shape is in the schema metadata and the manifest). Like the
feature cache (``pipeline/features.py``) runs are keyed by ``(video_id, fingerprint)``: a video whose
fingerprint is in a committed run is never decoded again, and a file that failed to decode in its current
state is not retried. Decoding is ``pipeline.extract.decode_video_row`` run as Ray Data tasks, so the pixels
are exactly what the encoders see at index time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data

from pipeline.decode import Resize, check_resize
from pipeline.extract import ExtractConfig, clip_key_columns, decode_video_row
from pipeline.features import cached_failures, cached_fingerprints, sampling_tag
from pipeline.sampling import SamplingConfig
from pipeline.shards import ShardRunWriter, committed_runs, content_key, iter_run_tables
from pipeline.store import StoreLayout

CLIP_SHAPE_KEY = b"clip_shape"
DEFAULT_CLIPS_PER_SHARD = 256  # ~25 MB per part at 8 frames of 64×64


def clip_cache_dir(layout: StoreLayout, collection: str, sampling: SamplingConfig, frame_size: int,
                   resize: Resize = "crop") -> Path:
    """``<root>/clips/<sampling_tag>-s<size>[-fit]/<collection>``: one cache per sampling, frame size and resize."""
    if frame_size < 1:
        raise ValueError(f"frame_size must be a positive number of pixels, got {frame_size}")
    check_resize(resize)
    geometry = f"s{frame_size}" + ("" if resize == "crop" else f"-{resize}")
    return layout.clip_cache_dir(f"{sampling_tag(sampling)}-{geometry}", collection)


def clip_schema(clip_shape: tuple[int, ...]) -> pa.Schema:
    return pa.schema(
        [
            ("video_id", pa.string()),
            ("fingerprint", pa.string()),
            ("clip_idx", pa.int32()),
            ("t_start", pa.float64()),
            ("t_end", pa.float64()),
            ("frames", pa.binary()),
        ],
        metadata={CLIP_SHAPE_KEY: json.dumps(list(clip_shape)).encode()},
    )


def ensure_clip_cache(
    layout: StoreLayout,
    collection: str,
    rows: list[dict],
    sampling: SamplingConfig,
    frame_size: int,
    extract_config: ExtractConfig,
    *,
    resize: Resize = "crop",
    clips_per_shard: int = DEFAULT_CLIPS_PER_SHARD,
) -> dict:
    """Decode the clips of ``rows`` (dicts with video_id, fingerprint, path) not cached yet; commit one run.

    Ray must be initialised. Returns counts, the cache directory and the decode failures
    (``[{video_id, fingerprint, error}]``, including those already known from earlier runs).
    """
    started = time.monotonic()
    cache_dir = clip_cache_dir(layout, collection, sampling, frame_size, resize)
    cached = cached_fingerprints(cache_dir)
    known_failures = cached_failures(cache_dir)
    todo = [r for r in rows if cached.get(r["video_id"]) != r["fingerprint"]]
    repeat_failures = [known_failures[r["video_id"]] for r in todo
                       if known_failures.get(r["video_id"], {}).get("fingerprint") == r["fingerprint"]]
    repeat_ids = {failure["video_id"] for failure in repeat_failures}
    todo = [r for r in todo if r["video_id"] not in repeat_ids]
    decoded = _decode_into_run(cache_dir, todo, sampling, frame_size, resize, extract_config, clips_per_shard) if todo else {
        "videos": 0, "clips": 0, "failures": [], "run_dir": None}
    return {
        "clip_dir": str(cache_dir),
        "requested": len(rows),
        "cached": len(rows) - len(todo) - len(repeat_failures),
        "decoded": len(todo),
        "decoded_ok": decoded["videos"],
        "clips_decoded": decoded["clips"],
        "run_dir": decoded["run_dir"],
        "failures": sorted(decoded["failures"] + repeat_failures, key=lambda item: item["video_id"]),
        "seconds": round(time.monotonic() - started, 2),
    }


def _decode_into_run(cache_dir: Path, rows: list[dict], sampling: SamplingConfig, frame_size: int, resize: Resize,
                     extract_config: ExtractConfig, clips_per_shard: int) -> dict:
    clip_shape = (sampling.frames_per_clip, frame_size, frame_size, 3)
    run_key = content_key([sampling.model_dump_json(), str(frame_size), resize]
                          + sorted(f"{r['video_id']}:{r['fingerprint']}" for r in rows))
    writer = ShardRunWriter(cache_dir, run_key)
    items = [{"video_id": r["video_id"], "fingerprint": r["fingerprint"], "path": r["path"]} for r in rows]
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), 64)).flat_map(
        decode_video_row,
        fn_kwargs={"sampling": sampling.model_dump(), "frame_size": frame_size, "resize": resize},
        num_cpus=extract_config.decode_cpus,
    )
    schema = clip_schema(clip_shape)
    failures: dict[str, dict] = {}
    decoded: dict[str, str] = {}
    clips = 0
    for batch in dataset.iter_batches(batch_size=clips_per_shard, batch_format="numpy"):
        ok = batch["error"] == ""
        for video_id, fingerprint, error in zip(batch["video_id"][~ok], batch["fingerprint"][~ok], batch["error"][~ok]):
            failures[str(video_id)] = {"video_id": str(video_id), "fingerprint": str(fingerprint), "error": str(error)}
        if not ok.any():
            continue
        frames = np.ascontiguousarray(np.asarray(batch["frames"])[ok], dtype=np.uint8)
        if frames.shape[1:] != clip_shape:
            raise ValueError(f"decoded clips have shape {frames.shape[1:]}, expected {clip_shape}")
        table = pa.table({**clip_key_columns(batch, ok),
                          "frames": pa.array([clip.tobytes() for clip in frames], pa.binary())}, schema=schema)
        decoded.update(zip(table["video_id"].to_pylist(), table["fingerprint"].to_pylist()))
        writer.write(table)
        clips += table.num_rows
    # A video counts as cached only when all its clips are in; a failed video has no rows at all.
    for video_id in failures:
        decoded.pop(video_id, None)
    writer.commit({
        "kind": "decoded_clips",
        "sampling": sampling.model_dump(),
        "frame_size": frame_size,
        "resize": resize,
        "clip_shape": list(clip_shape),
        "videos": sorted(decoded.items()),
        "failures": sorted(failures.values(), key=lambda item: item["video_id"]),
    })
    return {"videos": len(decoded), "clips": clips, "failures": list(failures.values()), "run_dir": str(writer.run_dir)}


def load_clips(
    layout: StoreLayout,
    collection: str,
    videos: dict[str, str],
    sampling: SamplingConfig,
    frame_size: int,
    resize: Resize = "crop",
) -> tuple[pa.Table, np.ndarray]:
    """Cached clips of the wanted ``video_id → fingerprint`` videos, each from its newest committed run.

    Returns a table (video_id, fingerprint, clip_idx, t_start, t_end) sorted by (video_id, clip_idx) and the
    matching ``uint8 [N, K, S, S, 3]`` array. Videos that are not cached (or cached with another fingerprint)
    are simply absent; compare the table's video ids with what you asked for.
    """
    cache_dir = clip_cache_dir(layout, collection, sampling, frame_size, resize)
    clip_shape = (sampling.frames_per_clip, frame_size, frame_size, 3)
    remaining = dict(videos)
    tables = []
    for run_dir, manifest in committed_runs(cache_dir):
        in_run = sorted(vid for vid, fp in manifest.get("videos", []) if remaining.get(vid) == fp)
        if not in_run:
            continue
        if tuple(manifest.get("clip_shape", ())) != clip_shape:
            raise ValueError(f"{run_dir} holds clips of shape {manifest.get('clip_shape')}, expected {clip_shape}; "
                             "delete it to rebuild the cache")
        wanted = pa.array(in_run, pa.string())
        for table in iter_run_tables(run_dir, manifest):
            tables.append(table.filter(pc.is_in(table["video_id"], value_set=wanted)))
        for vid in in_run:
            remaining.pop(vid)
        if not remaining:
            break
    meta_columns = ["video_id", "fingerprint", "clip_idx", "t_start", "t_end"]
    if not tables:
        empty = pa.table({name: pa.array([], clip_schema(clip_shape).field(name).type) for name in meta_columns})
        return empty, np.zeros((0, *clip_shape), np.uint8)
    table = pa.concat_tables(tables).sort_by([("video_id", "ascending"), ("clip_idx", "ascending")])
    frames = frames_from_column(table["frames"], clip_shape)
    return table.select(meta_columns), frames


def frames_from_column(column: pa.Array | pa.ChunkedArray, clip_shape: tuple[int, ...]) -> np.ndarray:
    """``uint8 [N, *clip_shape]`` from a binary column of raw clip bytes (one copy, no Python objects)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    size = int(np.prod(clip_shape))
    out = np.empty((sum(len(chunk) for chunk in chunks), *clip_shape), np.uint8)
    row = 0
    for chunk in chunks:  # chunk by chunk: binary offsets are int32, so one array holds at most 2 GiB
        if len(chunk) == 0:
            continue
        if chunk.null_count or (pc.binary_length(chunk).to_numpy(zero_copy_only=False) != size).any():
            raise ValueError(f"a cached clip does not have {size} bytes (shape {clip_shape}); delete the cache run")
        offsets = np.frombuffer(chunk.buffers()[1], np.int32)[chunk.offset: chunk.offset + len(chunk) + 1]
        data = np.frombuffer(chunk.buffers()[2], np.uint8)[offsets[0]: offsets[-1]]
        out[row: row + len(chunk)] = data.reshape(len(chunk), *clip_shape)
        row += len(chunk)
    return out
