"""Packed binary code shards: ``codes/<model_id>/<collection>/run-<key>/part-*.parquet`` + ``_MANIFEST.json``.

Codes are ``fixed_size_binary[bits/8]`` (``np.packbits`` order, most significant bit first), one row per clip.
The run key is derived from the model and the exact (video_id, fingerprint) set, so hashing the same
collection state with the same model twice finds the committed run and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from hashing.bits import codes_to_arrow
from hashing.hashers import Hasher
from pipeline.features import embeddings_from_column
from pipeline.shards import ShardRunWriter, committed_runs, content_key, read_run
from pipeline.store import StoreLayout


def code_schema(n_bits: int) -> pa.Schema:
    return pa.schema(
        [
            ("video_id", pa.string()),
            ("clip_idx", pa.int32()),
            ("t_start", pa.float64()),
            ("t_end", pa.float64()),
            ("code", pa.binary(n_bits // 8)),
        ],
        metadata={"code_bits": str(n_bits), "bit_order": "msb-first (np.packbits)"},
    )


@dataclass
class CodeRun:
    run_dir: Path
    manifest: dict
    written: bool


def codes_run_key(model_id: str, videos: dict[str, str], model_digest: str = "") -> str:
    # The digest keys the run by the model's content, so a model directory changed under the same id (stores
    # from before immutable model versions) can never reuse codes made with other weights.
    return content_key([model_id, model_digest] + sorted(f"{vid}:{fp}" for vid, fp in videos.items()))


def write_code_run(
    layout: StoreLayout,
    *,
    model_id: str,
    collection: str,
    hasher: Hasher,
    clip_features: pa.Table,
    videos: dict[str, str],
    model_digest: str = "",
    rows_per_shard: int = 1_000_000,
) -> CodeRun:
    """Hash clip features of ``videos`` (video_id → fingerprint) into a committed code run (idempotent)."""
    set_dir = layout.codes_dir(model_id, collection)
    run_key = codes_run_key(model_id, videos, model_digest)
    existing = {path: manifest for path, manifest in committed_runs(set_dir) if manifest.get("run_key") == run_key}
    if existing:
        run_dir, manifest = next(iter(existing.items()))
        return CodeRun(run_dir, manifest, written=False)
    writer = ShardRunWriter(set_dir, run_key)
    schema = code_schema(hasher.n_bits)
    for offset in range(0, clip_features.num_rows, rows_per_shard):
        part = clip_features.slice(offset, rows_per_shard)
        packed = hasher.encode(embeddings_from_column(part["embedding"]), modality="video")
        writer.write(
            pa.table(
                {
                    "video_id": part["video_id"],
                    "clip_idx": part["clip_idx"],
                    "t_start": part["t_start"],
                    "t_end": part["t_end"],
                    "code": codes_to_arrow(packed),
                },
                schema=schema,
            )
        )
    manifest = writer.commit(
        {
            "kind": "codes",
            "model_id": model_id,
            "model_digest": model_digest,
            "collection": collection,
            "code_bits": hasher.n_bits,
            "videos": sorted(videos.items()),
        }
    )
    return CodeRun(writer.run_dir, manifest, written=True)


def read_code_run(run_dir: Path, manifest: dict) -> pa.Table:
    table = read_run(run_dir, manifest)
    if table is None:
        return code_schema(int(manifest["code_bits"])).empty_table()
    return table
