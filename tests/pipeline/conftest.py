"""Fixtures of the pipeline tests: a store fabricated from embeddings (no video is made or decoded).

``no_decoding`` / ``no_decoding_in_module`` (make every decoder raise) live in ``tests/conftest.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

from pipeline.catalog import rows_to_table, video_id, write_catalog
from pipeline.features import clip_feature_dir, clip_feature_schema, embedding_array, ensure_text_features, text_feature_dir
from pipeline.sampling import SamplingConfig
from pipeline.shards import ShardRunWriter, content_key
from pipeline.store import StoreLayout


def catalog_rows(collection: str, videos: list[dict]) -> list[dict]:
    """Catalog rows for ``videos`` ({uri, caption, labels, split, status?, fingerprint?}); probe fields made up."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for video in videos:
        rows.append({
            "video_id": video_id(collection, video["uri"]), "collection": collection, "uri": video["uri"],
            "path": f"/nowhere/{collection}/{video['uri']}", "caption": video.get("caption"),
            "labels": video.get("labels"), "split": video.get("split"), "media_kind": "video", "size_bytes": 1000,
            "mtime_ns": 0, "fingerprint": video.get("fingerprint", f"fp-{video['uri']}"), "duration_s": 8.0,
            "fps": 25.0, "width": 64, "height": 64, "frame_count": 200, "status": video.get("status", "ok"),
            "error": video.get("error"), "cataloged_at": now,
        })
    return rows


def write_clip_features(layout: StoreLayout, encoder_id: str, collection: str, sampling: SamplingConfig,
                        rows: list[dict], embeddings: dict[str, np.ndarray], failures: list[dict] = ()) -> None:
    """A committed clip-feature run: per video (by uri) a [clips, D] matrix, as the extraction stage writes it."""
    records = [(row, clip_idx, clip) for row in rows if row["uri"] in embeddings
               for clip_idx, clip in enumerate(np.atleast_2d(embeddings[row["uri"]]))]
    dim = records[0][2].shape[0]
    table = pa.table({
        "video_id": [r["video_id"] for r, _, _ in records],
        "fingerprint": [r["fingerprint"] for r, _, _ in records],
        "clip_idx": pa.array([i for _, i, _ in records], pa.int32()),
        "t_start": [4.0 * i for _, i, _ in records],
        "t_end": [4.0 * i + 4.0 for _, i, _ in records],
        "embedding": embedding_array(np.stack([c for _, _, c in records])),
    }, schema=clip_feature_schema(dim))
    videos = sorted({(r["video_id"], r["fingerprint"]) for r, _, _ in records})
    writer = ShardRunWriter(clip_feature_dir(layout, encoder_id, collection, sampling),
                            content_key([encoder_id] + [f"{v}:{f}" for v, f in videos]))
    writer.write(table)
    writer.commit({"kind": "clip_features", "embed_dim": dim, "videos": [list(v) for v in videos],
                   "failures": list(failures)})


@pytest.fixture(scope="session")
def fabricate_collection() -> Callable:
    """``fabricate(layout, collection, videos, encoder_id, sampling, clip_embeddings, text_embeddings)``.

    Writes the catalog, the clip features of the videos whose uri is in ``clip_embeddings`` and the caption
    embeddings (``text_embeddings``: caption → vector); returns the catalog rows.
    """

    def fabricate(layout: StoreLayout, collection: str, videos: list[dict], *, encoder_id: str,
                  sampling: SamplingConfig, clip_embeddings: dict[str, np.ndarray],
                  text_embeddings: dict[str, np.ndarray], failures: list[dict] = ()) -> list[dict]:
        rows = catalog_rows(collection, videos)
        write_catalog(layout, collection, rows_to_table(rows))
        write_clip_features(layout, encoder_id, collection, sampling, rows, clip_embeddings, failures)
        if text_embeddings:
            ensure_text_features(text_feature_dir(layout, encoder_id, collection), list(text_embeddings),
                                 lambda captions: np.stack([text_embeddings[c] for c in captions]))
        return rows

    return fabricate
