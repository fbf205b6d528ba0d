"""Tests for pipeline/sample_collection.py: a small collection written twice with the same seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.decode import VideoSource, probe_video
from pipeline.sample_collection import (
    COLOURS,
    LABEL_VOCABULARY,
    MANIFEST_NAME,
    MOTIONS,
    SHAPES,
    COLOUR_WORDS,
    SHAPE_WORDS,
    existing_sample_collection,
    make_sample_collection,
    plan_collection,
    yuv_frame,
)

N_VIDEOS = 8
SEED = 3


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("samples")
    first = make_sample_collection(root / "a", N_VIDEOS, SEED)
    second = make_sample_collection(str(root / "b"), N_VIDEOS, SEED, progress=True, workers=2)  # parallel
    return first, second


@pytest.fixture(scope="module")
def rows(collections: tuple[Path, Path]) -> list[dict]:
    return pq.read_table(collections[0]).to_pylist()


def combo(row: dict) -> tuple[str, str, str]:
    return row["shape"], row["colour"], row["motion"]


def test_manifest_location_and_columns(collections: tuple[Path, Path], rows: list[dict]) -> None:
    manifest = collections[0]
    assert manifest.name == MANIFEST_NAME
    assert len(rows) == N_VIDEOS
    for column in ("uri", "caption", "labels", "split", "shape", "colour", "motion"):
        assert column in rows[0]
    for row in rows:
        assert not Path(row["uri"]).is_absolute()
        assert (manifest.parent / row["uri"]).is_file()
    # Written through temp files: nothing but the manifest and the videos is left behind.
    assert sorted(p.name for p in manifest.parent.iterdir()) == [MANIFEST_NAME, "videos"]
    assert all(p.suffix == ".mp4" for p in (manifest.parent / "videos").iterdir())


def test_same_seed_gives_the_same_manifest_and_pictures(collections: tuple[Path, Path]) -> None:
    first, second = collections
    assert pq.read_table(first).equals(pq.read_table(second))
    for row in pq.read_table(first).to_pylist():
        a, b = first.parent / row["uri"], second.parent / row["uri"]
        # The same bytes, hence the same pictures: x264 runs on one thread, the RGB → YUV conversion is NumPy's
        # (swscale's read uninitialised frame padding for 192 × 108 videos), and the frames' row padding is zeroed:
        # after the swscale fix one video's bytes still differed now and then between processes (2026-12-04, twice
        # in a full session, not reproduced alone); padding left as allocated, which x264 may read, is the suspect.
        assert a.read_bytes() == b.read_bytes()


def test_different_seeds_give_different_collections() -> None:
    assert plan_collection(N_VIDEOS, SEED) != plan_collection(N_VIDEOS, SEED + 1)


def test_labels_are_vocabulary_strings_covering_the_main_object(rows: list[dict]) -> None:
    assert len(set(LABEL_VOCABULARY)) == len(LABEL_VOCABULARY)
    assert len(SHAPES) >= 6 and len(COLOURS) >= 6 and set(MOTIONS) >= {"left", "right", "up", "down"}
    for row in rows:
        assert set(row["labels"]) <= set(LABEL_VOCABULARY)
        assert row["labels"] == sorted(row["labels"], key=LABEL_VOCABULARY.index)
        assert {f"shape:{row['shape']}", f"colour:{row['colour']}", f"motion:{row['motion']}"} <= set(row["labels"])
        assert len(row["labels"]) == (3 if row["n_objects"] == 1 else 6)


def test_captions_name_the_colour_and_shape(rows: list[dict]) -> None:
    for row in rows:
        assert len(row["captions"]) == 3 and row["caption"] == row["captions"][0]
        assert len(set(row["captions"])) == 3
        for caption in row["captions"]:
            assert any(word in caption for word in COLOUR_WORDS[row["colour"]]), caption
            assert any(word in caption for word in SHAPE_WORDS[row["shape"]]), caption


def test_some_combinations_appear_only_in_the_test_split(rows: list[dict]) -> None:
    assert {row["split"] for row in rows} == {"train", "test"}
    train = {combo(row) for row in rows if row["split"] == "train"}
    test = {combo(row) for row in rows if row["split"] == "test"}
    assert test - train


def test_held_out_combinations_never_reach_training_even_in_larger_collections() -> None:
    for seed in range(3):
        specs = plan_collection(48, seed)
        train = {(o.shape, o.colour, o.motion) for s in specs if s.split == "train" for o in s.objects}
        test_main = {(s.objects[0].shape, s.objects[0].colour, s.objects[0].motion)
                     for s in specs if s.split == "test"}
        assert len(test_main - train) >= 48 // 8


def test_motion_pairs_differ_only_in_direction(collections: tuple[Path, Path], rows: list[dict]) -> None:
    pairs: dict[str, list[dict]] = {}
    for row in rows:
        if row["pair_id"] is not None:
            pairs.setdefault(row["pair_id"], []).append(row)
    assert pairs
    opposite = {("left", "right"), ("up", "down")}
    for first, second in pairs.values():
        assert tuple(sorted((first["motion"], second["motion"]))) in opposite
        for column in ("shape", "colour", "background", "width", "height", "frame_count", "split"):
            assert first[column] == second[column]
        # The same trajectory played backwards: frame 0 of one is the last frame of the other.
        root = collections[0].parent
        with VideoSource(root / first["uri"], 48) as a, VideoSource(root / second["uri"], 48) as b:
            last = a.info.frame_count - 1
            a_frames = a.read_frames([0, last]).astype(int)
            b_frames = b.read_frames([0, last]).astype(int)
        mirrored = np.abs(a_frames[0] - b_frames[1]).mean()
        same_time = np.abs(a_frames[0] - b_frames[0]).mean()
        assert mirrored < 6 and same_time > 2 * mirrored


def test_files_decode_with_decord_as_described(collections: tuple[Path, Path], rows: list[dict]) -> None:
    root = collections[0].parent
    for row in rows:
        info = probe_video(str(root / row["uri"]))
        assert (info.width, info.height, info.frame_count) == (row["width"], row["height"], row["frame_count"])
        assert info.fps == pytest.approx(row["fps"], rel=1e-3)
        assert 2.0 <= info.duration_s <= 12.5


def test_plans_for_tiny_and_larger_collections() -> None:
    for n in range(1, 6):
        assert len(plan_collection(n, 0)) == n
    specs = plan_collection(24, 0)
    assert len({s.pair_id for s in specs if s.pair_id}) == 3
    sizes = {(s.width, s.height) for s in plan_collection(60, 0)}
    assert len(sizes) >= 4 and any(w % 2 for w, _ in sizes)  # several sizes, one of them odd


def test_rejects_empty_collections(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_videos"):
        make_sample_collection(tmp_path, 0, SEED)


def test_an_existing_collection_is_found_only_at_its_size(collections: tuple[Path, Path], tmp_path: Path) -> None:
    first = collections[0]
    assert existing_sample_collection(first.parent, N_VIDEOS) == first
    assert existing_sample_collection(first.parent, N_VIDEOS + 1) is None
    assert existing_sample_collection(tmp_path / "nothing-here", N_VIDEOS) is None


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_large_collections_plan_without_running_out_of_combinations(seed):
    # 2,840 videos with seed 2 used to fail with "high <= 0" (every combination held out).
    specs = plan_collection(3000, seed)
    assert len(specs) == 3000
    assert {spec.split for spec in specs} == {"train", "test"}


def test_colour_conversion_gives_bt601_limited_range_and_halves_chroma_for_yuv420p() -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :2] = (255, 255, 255)  # white, black, red in 2-pixel columns
    rgb[:, 4:] = (255, 0, 0)
    planes = yuv_frame(rgb, "yuv420p").to_ndarray()  # Y (4 rows), then U and V packed into 2 rows of width 6
    assert planes.shape == (6, 6)
    assert planes[:4, 0].tolist() == [235] * 4 and planes[:4, 2].tolist() == [16] * 4 and planes[0, 4] == 81
    u, v = planes[4:].ravel()[:6], planes[4:].ravel()[6:]  # 2 × 3 chroma samples each
    assert u.tolist() == [128, 128, 90] * 2 and v.tolist() == [128, 128, 240] * 2
    full = yuv_frame(rgb, "yuv444p").to_ndarray()
    assert full.shape == (3, 4, 6) and full[0, 0, 0] == 235 and full[2, 0, 5] == 240


def test_colour_conversion_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(ValueError, match="even"):
        yuv_frame(np.zeros((3, 4, 3), np.uint8), "yuv420p")
    with pytest.raises(ValueError, match="unsupported pixel format"):
        yuv_frame(np.zeros((2, 2, 3), np.uint8), "nv12")


@pytest.mark.parametrize(("width", "height", "pix_fmt"), [(202, 142, "yuv420p"), (201, 141, "yuv444p")])
def test_frames_given_to_the_encoder_have_zeroed_row_padding(width: int, height: int, pix_fmt: str) -> None:
    rgb = np.random.default_rng(0).integers(1, 256, (height, width, 3), dtype=np.uint8)
    frame = yuv_frame(rgb, pix_fmt)
    for plane in frame.planes:
        rows = np.frombuffer(bytes(plane), np.uint8).reshape(-1, plane.line_size)
        assert plane.line_size > plane.width  # these sizes do have padding
        assert not rows[:, plane.width:].any()
