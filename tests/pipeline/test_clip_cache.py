"""Tests for pipeline/clip_cache.py: decoded uint8 clips cached as Parquet shard runs, keyed by fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.catalog import fingerprint, video_id
from pipeline.clip_cache import clip_cache_dir, ensure_clip_cache, frames_from_column, load_clips
from pipeline.extract import ExtractConfig
from pipeline.sample_collection import make_sample_collection
from pipeline.sampling import SamplingConfig, decode_clips
from pipeline.shards import committed_runs
from pipeline.store import StoreLayout

SAMPLING = SamplingConfig(clip_seconds=4.0, frames_per_clip=4)
SIZE = 32


def _row(collection_dir: Path, uri: str) -> dict:
    path = str(collection_dir / uri)
    return {"video_id": video_id("tiny", uri), "fingerprint": fingerprint(path), "path": path}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Two sample videos, a png and a file that is not a video."""
    root = tmp_path_factory.mktemp("media")
    manifest = pq.read_table(make_sample_collection(root, 2, seed=5)).to_pylist()
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = (250, 10, 10)
    Image.fromarray(image).save(root / "still.png")
    (root / "broken.mp4").write_text("not a video")
    rows = [_row(root, r["uri"]) for r in manifest] + [_row(root, "still.png"), _row(root, "broken.mp4")]
    return root, rows


def test_cache_decodes_once_reports_failures_and_loads_the_exact_pixels(media, tmp_path, ray_instance):
    root, rows = media
    layout = StoreLayout(tmp_path / "store")
    first = ensure_clip_cache(layout, "tiny", rows, SAMPLING, SIZE, ExtractConfig())
    assert first["decoded"] == 4 and first["cached"] == 0 and first["decoded_ok"] == 3
    assert [f["video_id"] for f in first["failures"]] == [rows[3]["video_id"]]
    assert first["failures"][0]["error"] and "\n" not in first["failures"][0]["error"]
    cache_dir = clip_cache_dir(layout, "tiny", SAMPLING, SIZE)
    assert cache_dir.relative_to(layout.root).parts[0] == "clips" and cache_dir.name == "tiny"
    assert f"-s{SIZE}" in cache_dir.parent.name

    wanted = {r["video_id"]: r["fingerprint"] for r in rows}
    table, clips = load_clips(layout, "tiny", wanted, SAMPLING, SIZE)
    assert clips.dtype == np.uint8 and clips.shape[1:] == (4, SIZE, SIZE, 3)
    assert table.num_rows == len(clips) == first["clips_decoded"] >= 3
    assert set(table["video_id"].to_pylist()) == {r["video_id"] for r in rows[:3]}
    assert table.column_names == ["video_id", "fingerprint", "clip_idx", "t_start", "t_end"]
    # The cached pixels are exactly what decoding the file gives.
    first_video = [i for i, v in enumerate(table["video_id"].to_pylist()) if v == rows[0]["video_id"]]
    expected = np.stack([frames for _, frames in decode_clips(rows[0]["path"], SAMPLING, SIZE)])
    np.testing.assert_array_equal(clips[first_video], expected)
    # The image is one clip whose frames are all the same picture.
    image_rows = [i for i, v in enumerate(table["video_id"].to_pylist()) if v == rows[2]["video_id"]]
    assert len(image_rows) == 1 and (clips[image_rows[0]] == clips[image_rows[0]][0]).all()

    again = ensure_clip_cache(layout, "tiny", rows, SAMPLING, SIZE, ExtractConfig())
    assert again["decoded"] == 0 and again["cached"] == 3 and len(again["failures"]) == 1
    assert len(committed_runs(cache_dir)) == 1


def test_changed_file_is_decoded_again_and_stale_fingerprints_are_not_loaded(media, tmp_path, ray_instance):
    root, rows = media
    layout = StoreLayout(tmp_path / "store")
    ensure_clip_cache(layout, "tiny", rows[:1], SAMPLING, SIZE, ExtractConfig())
    changed = dict(rows[0], fingerprint="0-0-changed")
    table, clips = load_clips(layout, "tiny", {changed["video_id"]: changed["fingerprint"]}, SAMPLING, SIZE)
    assert table.num_rows == 0 and clips.shape == (0, 4, SIZE, SIZE, 3)
    result = ensure_clip_cache(layout, "tiny", [changed], SAMPLING, SIZE, ExtractConfig())
    assert result["decoded"] == 1
    assert len(committed_runs(clip_cache_dir(layout, "tiny", SAMPLING, SIZE))) == 2
    table, _ = load_clips(layout, "tiny", {changed["video_id"]: changed["fingerprint"]}, SAMPLING, SIZE)
    assert set(table["fingerprint"].to_pylist()) == {"0-0-changed"}


def test_other_frame_size_or_sampling_is_another_cache(tmp_path):
    layout = StoreLayout(tmp_path)
    base = clip_cache_dir(layout, "c", SAMPLING, 64)
    assert clip_cache_dir(layout, "c", SAMPLING, 32) != base
    assert clip_cache_dir(layout, "c", SamplingConfig(frames_per_clip=8), 64) != base
    assert clip_cache_dir(layout, "c", SAMPLING, 16, "fit") != clip_cache_dir(layout, "c", SAMPLING, 16)
    with pytest.raises(ValueError, match="frame_size"):
        clip_cache_dir(layout, "c", SAMPLING, 0)
    with pytest.raises(ValueError, match="resize"):
        clip_cache_dir(layout, "c", SAMPLING, 16, "stretch")


def test_frames_column_round_trip_over_chunks_and_slices():
    clips = np.random.default_rng(0).integers(0, 256, (5, 2, 4, 4, 3), dtype=np.uint8)
    column = pa.chunked_array([pa.array([c.tobytes() for c in clips[:2]], pa.binary()),
                               pa.array([c.tobytes() for c in clips[2:]], pa.binary()).slice(1)])
    np.testing.assert_array_equal(frames_from_column(column, (2, 4, 4, 3)), np.concatenate([clips[:2], clips[3:]]))
    with pytest.raises(ValueError, match="96 bytes"):
        frames_from_column(pa.array([b"short"]), (2, 4, 4, 3))
