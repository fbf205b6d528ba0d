"""Tests for pipeline/search.py: Hamming top-k over published shards, grouped per video; query hashing."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from hashing.bits import codes_to_arrow, hamming_distances
from hashing.hashers import make_hasher
from pipeline.codes import code_schema
from pipeline.images import decode_media_clips
from pipeline.models import save_model
from pipeline.publish import CollectionCodes, IndexNotFoundError, publish_index, with_catalog_columns
from pipeline.sampling import SamplingConfig
from pipeline.search import PublishedIndex, QueryHasher
from pipeline.store import StoreLayout

BITS = 16


def _packed(codes: list[int]) -> np.ndarray:
    return np.array([[code >> 8, code & 0xFF] for code in codes], dtype=np.uint8).reshape(-1, 2)


def _collection(name: str, clips: list[tuple[str, int, int]]) -> CollectionCodes:
    """(video_id, clip_idx, 16-bit code) rows with 4-second clips, joined with a made-up catalog."""
    codes = pa.table(
        {
            "video_id": [c[0] for c in clips],
            "clip_idx": pa.array([c[1] for c in clips], pa.int32()),
            "t_start": [4.0 * c[1] for c in clips],
            "t_end": [4.0 * c[1] + 4.0 for c in clips],
            "code": codes_to_arrow(_packed([c[2] for c in clips])),
        },
        schema=code_schema(BITS),
    )
    video_ids = sorted(set(codes["video_id"].to_pylist()))
    catalog = pa.table(
        {
            "video_id": video_ids,
            "uri": [f"{name}/{v}.mp4" for v in video_ids],
            "caption": [f"a video called {v}" for v in video_ids],
            "labels": pa.array([[v] for v in video_ids], pa.list_(pa.string())),
        }
    )
    return CollectionCodes(collection=name, codes_run="run-1", table=with_catalog_columns(codes, catalog))


def _open(tmp_path: Path, collections: list[CollectionCodes], shard_rows: int, model_id: str = "m") -> PublishedIndex:
    layout = StoreLayout(tmp_path)
    publish_index(layout, "idx", model_id=model_id, code_bits=BITS, collections=collections, metrics={},
                  model_info={}, shard_rows=shard_rows)
    return PublishedIndex.open(layout, "idx")


# Video "long" has four clips; each clip and each short video has a distinct code.
CLIPS = [
    ("long", 0, 0b0000_0000_0000_0000),
    ("long", 1, 0b0000_0000_0000_0011),
    ("long", 2, 0b0000_0000_0000_0111),
    ("long", 3, 0b1111_0000_0000_0000),
    ("near", 0, 0b0000_0000_0000_1111),
    ("mid", 0, 0b0000_0000_1111_1111),
    ("far", 0, 0b1111_1111_1111_1111),
    ("far", 1, 0b1111_1111_1111_1110),
]


@pytest.fixture
def index(tmp_path) -> PublishedIndex:
    return _open(tmp_path, [_collection("col", CLIPS)], shard_rows=3)


def test_index_spans_several_shards(index):
    assert len(index.shards) == 3
    assert index.size == len(CLIPS)
    assert index.version == 1 and index.name == "idx"


def test_exact_code_comes_first_at_distance_zero(index):
    hits = index.search(_packed([0b0000_0000_1111_1111]), k=3)
    first = hits[0]
    assert (first.rank, first.distance, first.video_id) == (1, 0, "mid")
    assert first.uri == "col/mid.mp4" and first.caption == "a video called mid" and first.collection == "col"

    # A clip in a later shard: the hit carries that clip's time range.
    hits = index.search(_packed([0b1111_1111_1111_1110]), k=1)
    assert [(h.video_id, h.distance, h.clip_idx, h.t_start, h.t_end) for h in hits] == [("far", 0, 1, 4.0, 8.0)]


def test_results_are_grouped_per_video_and_ordered_by_distance(index):
    hits = index.search(_packed([0]), k=4)
    # "long" matches with four clips but appears once, represented by its closest clip.
    assert [(h.video_id, h.distance, h.clip_idx) for h in hits] == [
        ("long", 0, 0),
        ("near", 4, 0),
        ("mid", 8, 0),
        ("far", 15, 1),
    ]
    assert [h.rank for h in hits] == [1, 2, 3, 4]


def test_k_larger_than_the_number_of_videos_returns_every_video_once(index):
    hits = index.search(_packed([0b0000_0000_0000_0111]), k=50)
    assert sorted(h.video_id for h in hits) == ["far", "long", "mid", "near"]
    distances = [h.distance for h in hits]
    assert distances == sorted(distances)
    assert hits[0].video_id == "long" and hits[0].distance == 0 and hits[0].clip_idx == 2


def test_search_matches_a_brute_force_ranking(tmp_path):
    rng = np.random.default_rng(7)
    clips = [(f"v{i % 37}", i // 37, int(code)) for i, code in enumerate(rng.integers(0, 1 << 16, size=300))]
    index = _open(tmp_path, [_collection("a", clips[:150]), _collection("b", clips[150:])], shard_rows=64)
    gallery = _packed([c[2] for c in clips])
    video_of_row = np.array([c[0] for c in clips])
    for n_queries in (1, 3):
        queries = _packed([int(q) for q in rng.integers(0, 1 << 16, size=n_queries)])
        distances = hamming_distances(queries, gallery).min(axis=0)
        best = {v: int(distances[video_of_row == v].min()) for v in set(video_of_row)}
        hits = index.search(queries, k=10)
        assert [h.distance for h in hits] == sorted(best.values())[:10]
        assert all(best[h.video_id] == h.distance for h in hits)
        assert len({h.video_id for h in hits}) == 10


def test_several_query_codes_do_not_hide_a_closer_video(tmp_path):
    # Query 1's nearest clips all belong to "big"; query 2 only reaches far-away videos. "close" is one bit
    # from query 1 and must rank second, even though neither query's first top list contains it.
    clips = [("big", i, 0x0000) for i in range(40)]
    clips += [("close", 0, 0x0001), ("c", 0, 0xFFFC), ("d", 0, 0xFFF0)]
    index = _open(tmp_path, [_collection("col", clips)], shard_rows=16)
    hits = index.search(_packed([0x0000, 0xFFFF]), k=2)
    assert [(h.video_id, h.distance) for h in hits] == [("big", 0), ("close", 1)]


def test_codes_of_video(index):
    codes = index.codes_of_video("long")
    assert codes.shape == (4, 2) and codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, _packed([c[2] for c in CLIPS if c[0] == "long"]))
    assert index.codes_of_video("unknown").shape == (0, 2)
    # A "more like this video" query finds the video itself first.
    assert index.search(index.codes_of_video("far"), k=1)[0].video_id == "far"


def test_empty_index_returns_nothing(tmp_path):
    index = _open(tmp_path, [], shard_rows=4)
    assert index.size == 0
    assert index.search(_packed([0]), k=5) == []


def test_open_without_a_published_version_is_a_clear_error(tmp_path):
    with pytest.raises(IndexNotFoundError, match="reelhash index"):
        PublishedIndex.open(StoreLayout(tmp_path), "idx")


def test_hit_as_dict_is_json_ready(index):
    hit = index.search(_packed([0]), k=1)[0]
    assert hit.as_dict() == {
        "rank": 1, "distance": 0, "video_id": "long", "collection": "col", "uri": "col/long.mp4",
        "clip_idx": 0, "t_start": 0.0, "t_end": 4.0, "caption": "a video called long",
    }


# ---------------------------------------------------------------- QueryHasher with a tiny random CLIP


@pytest.fixture(scope="module")
def tiny_encoder():
    from hashing.encoders import OpenClipEncoder, OpenClipEncoderConfig

    return OpenClipEncoder(OpenClipEncoderConfig(arch="reelhash-tiny", allow_random_weights=True, device="cpu"))


@pytest.fixture
def stored_model(tmp_path, tiny_encoder):
    layout = StoreLayout(tmp_path)
    rng = np.random.default_rng(0)
    hasher = make_hasher("lsh", 32, seed=3).fit(rng.standard_normal((20, tiny_encoder.embed_dim)))
    sampling = SamplingConfig(frames_per_clip=2, clip_seconds=0.5)
    model_id = save_model(layout, "tiny-model", hasher=hasher, encoder_config=tiny_encoder.config,
                          encoder_info=tiny_encoder.describe(), sampling=sampling, training={})
    index = _open(tmp_path, [_collection("col", CLIPS)], shard_rows=4, model_id=model_id)
    return layout, index, hasher, sampling


def test_query_hasher_text_codes(stored_model, tiny_encoder):
    layout, index, hasher, _ = stored_model
    query_hasher = QueryHasher.for_index(layout, index)
    assert query_hasher.model.model_id == index.manifest["model_id"]
    assert query_hasher.model.model_id.startswith("tiny-model-")
    codes = query_hasher.text_codes(["a red circle", "a blue square"])
    assert codes.shape == (2, 4) and codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, hasher.encode(tiny_encoder.encode_text(["a red circle", "a blue square"])))
    # The query hasher's codes have the width of the model, not of the index built here (16 bits):
    assert query_hasher.model.hasher.n_bits == 32


def test_query_hasher_video_codes_for_an_image_and_a_video(stored_model, tiny_encoder, tmp_path):
    layout, index, hasher, sampling = stored_model
    query_hasher = QueryHasher.for_index(layout, index)
    size = tiny_encoder.frame_spec.size

    image = tmp_path / "query.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(image)
    clips = np.stack([frames for _, frames in decode_media_clips(image, sampling, size)])
    np.testing.assert_array_equal(query_hasher.video_codes(str(image)), hasher.encode(tiny_encoder.encode_clips(clips)))

    video = _write_tiny_mp4(tmp_path / "query.mp4", seconds=1.0, fps=10)
    codes = query_hasher.video_codes(str(video))
    clips = np.stack([frames for _, frames in decode_media_clips(video, sampling, size)])
    assert len(codes) == len(clips) == 2  # one second of 0.5-second clips
    np.testing.assert_array_equal(codes, hasher.encode(tiny_encoder.encode_clips(clips)))


def _write_tiny_mp4(path: Path, seconds: float, fps: int) -> Path:
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(int(seconds * fps)):
            pixels = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_like_query_uses_at_most_max_clips_and_says_so(stored_model, tiny_encoder, tmp_path):
    layout, index, hasher, sampling = stored_model
    query_hasher = QueryHasher.for_index(layout, index)
    video = _write_tiny_mp4(tmp_path / "long.mp4", seconds=3.0, fps=10)  # six 0.5-second clips
    codes, warnings = query_hasher.video_query(str(video), max_clips=4)
    clips = np.stack([frames for _, frames in decode_media_clips(video, sampling, tiny_encoder.frame_spec.size)][:4])
    np.testing.assert_array_equal(codes, hasher.encode(tiny_encoder.encode_clips(clips)))
    assert warnings == ["the query video has more than 4 clips; only its first 4 (0.5 s each) were used"]
    assert query_hasher.video_query(str(video))[1] == []  # under the default cap nothing is dropped


def test_decoding_a_row_yields_clips_one_at_a_time(tmp_path):
    from pipeline.extract import decode_video_row

    video = _write_tiny_mp4(tmp_path / "v.mp4", seconds=2.0, fps=10)
    rows = decode_video_row({"video_id": "v", "fingerprint": "f", "path": str(video)},
                            {"clip_seconds": 0.5, "frames_per_clip": 2}, 16)
    first = next(rows)  # a generator: the first clip comes before the others are decoded
    assert first["error"] == "" and first["clip_idx"] == 0 and first["frames"].shape == (2, 16, 16, 3)
    assert first["thumbnail"][:2] == b"\xff\xd8"  # the clip's JPEG thumbnail travels with it
    assert [row["clip_idx"] for row in rows] == [1, 2, 3]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    [failure] = list(decode_video_row({"video_id": "b", "fingerprint": "f", "path": str(broken)},
                                      {"clip_seconds": 0.5, "frames_per_clip": 2}, 16))
    assert failure["clip_idx"] == -1 and failure["error"] and failure["thumbnail"] == b""


def test_an_archive_size_version_is_published_with_inverted_lists_and_says_it_is_approximate(tmp_path):
    from hashing.index import BinaryIndexConfig
    from pipeline.search import search_response

    rng = np.random.default_rng(3)
    centres = rng.integers(0, 1 << 16, size=8)
    clips = [(f"v{i // 4}", i % 4, int(centres[i % 8] ^ (1 << int(rng.integers(0, 16))))) for i in range(2000)]
    layout = StoreLayout(tmp_path)
    config = BinaryIndexConfig(exact_max_rows=1000, ivf_rows_per_list=100, ivf_nprobe=8)
    publish_index(layout, "idx", model_id="m", code_bits=BITS, collections=[_collection("col", clips)], metrics={},
                  model_info={}, shard_rows=1000, index_config=config)
    index = PublishedIndex.open(layout, "idx")
    assert index.manifest["search_index"] == {"kind": "ivf", "exact": False, "nprobe": 8}
    assert [shard["index_kind"] for shard in index.manifest["shards"]] == ["ivf", "ivf"] and not index.exact
    hits = index.search(_packed([clips[0][2]]), k=5)
    assert hits[0].distance == 0 and len({h.video_id for h in hits}) == 5
    assert search_response(index, "q", 5, hits, [])["exact"] is False
    small = _open(tmp_path / "small", [_collection("col", CLIPS)], shard_rows=3)
    assert small.exact and small.manifest["search_index"] == {"kind": "flat", "exact": True}


def test_a_version_records_the_lists_its_shards_really_scan_when_they_have_fewer_than_nprobe(tmp_path):
    from hashing.index import BinaryIndexConfig

    clips = [(f"v{i // 4}", i % 4, i) for i in range(2000)]
    config = BinaryIndexConfig(exact_max_rows=1000, ivf_rows_per_list=100, ivf_nprobe=64)  # 1,000-row shards: 8 lists
    layout = StoreLayout(tmp_path)
    publish_index(layout, "idx", model_id="m", code_bits=BITS, collections=[_collection("col", clips)], metrics={},
                  model_info={}, shard_rows=1000, index_config=config)
    index = PublishedIndex.open(layout, "idx")
    assert [shard["nprobe"] for shard in index.manifest["shards"]] == [8, 8]
    assert index.manifest["search_index"] == {"kind": "ivf", "exact": False, "nprobe": 8}
    assert [shard.nprobe for shard in index.shards] == [8, 8]
