"""Tests for pipeline/sampling.py: clip plans (pure arithmetic) and decode_clips on tiny real videos."""

from __future__ import annotations

import bisect
import itertools
from pathlib import Path

import numpy as np
import pydantic
import pytest

from media_files import write_h264
from pipeline import decode
from pipeline.decode import DecodeError, ProbeInfo, VideoSource
from pipeline.sampling import MODE_DECODERS, ClipPlan, SamplingConfig, decode_clips, group_clip_reads, plan_clips


def info(frame_count: int, fps: float) -> ProbeInfo:
    return ProbeInfo(duration_s=frame_count / fps, fps=fps, width=64, height=48, frame_count=frame_count)


def keyframe_of(keys: list[int], frame: int) -> int:
    return keys[bisect.bisect_right(keys, frame) - 1]


def assert_covering(plans: list[ClipPlan], probe: ProbeInfo) -> None:
    assert [p.clip_idx for p in plans] == list(range(len(plans)))
    assert plans[0].t_start == 0.0
    assert plans[-1].t_end == pytest.approx(probe.duration_s)
    for before, after in itertools.pairwise(plans):
        assert before.t_end == pytest.approx(after.t_start)
    for plan in plans:
        assert list(plan.frame_indices) == sorted(plan.frame_indices)
        assert all(0 <= i < probe.frame_count for i in plan.frame_indices)


# ---------------------------------------------------------------------------- config


def test_config_defaults_and_validation() -> None:
    config = SamplingConfig()
    assert (config.mode, config.clip_seconds, config.frames_per_clip, config.max_clips_per_video) == (
        "uniform", 4.0, 8, None)
    for bad in ({"clip_seconds": 0}, {"frames_per_clip": 0}, {"frames_per_clip": 65}, {"mode": "random"},
                {"max_clips_per_video": 0}, {"unknown": 1}):
        with pytest.raises(pydantic.ValidationError):
            SamplingConfig(**bad)
    assert SamplingConfig.model_validate(config.model_dump()) == config


# ---------------------------------------------------------------------------- uniform plans


def test_uniform_plan_of_a_minute_at_25_fps() -> None:
    probe = info(1500, 25.0)
    plans = plan_clips(probe, SamplingConfig())
    assert len(plans) == 15
    assert_covering(plans, probe)
    assert plans[0].frame_indices == (6, 18, 31, 43, 56, 68, 81, 93)  # centres of 8 segments of 100 frames
    for plan in plans:
        first = round(plan.t_start * 25)
        assert len(set(plan.frame_indices)) == 8
        assert all(first <= i < first + 100 for i in plan.frame_indices)


# Exact sampling's frames, pinned: changing them would change every uniform-mode feature already computed.
UNIFORM_OFFSETS = (6, 18, 31, 43, 56, 68, 81, 93)
UNIFORM_NTSC = [
    (7, 23, 39, 54, 70, 85, 101, 117), (132, 148, 164, 179, 195, 210, 226, 242),
    (257, 273, 289, 304, 320, 335, 351, 367), (382, 398, 414, 429, 445, 460, 476, 492),
    (507, 523, 539, 555, 570, 586, 602, 618), (633, 649, 665, 680, 696, 711, 727, 743),
    (758, 774, 790, 805, 821, 836, 852, 868), (883, 899, 915, 930, 946, 961, 977, 993),
]


def test_uniform_frames_are_pinned() -> None:
    minute = plan_clips(info(1500, 25.0), SamplingConfig())
    assert [p.frame_indices for p in minute] == [tuple(100 * c + o for o in UNIFORM_OFFSETS) for c in range(15)]
    ntsc = plan_clips(info(1001, 29.97), SamplingConfig())
    assert [p.frame_indices for p in ntsc] == UNIFORM_NTSC
    # Keyframes play no part in uniform plans.
    assert plan_clips(info(1001, 29.97), SamplingConfig(), [0, 5, 500]) == ntsc


@pytest.mark.parametrize(("frames", "fps", "n_clips"), [
    (5, 25.0, 1),      # 0.2 s: one clip
    (147, 25.0, 1),    # 5.88 s: round(1.47) = 1
    (153, 25.0, 2),    # 6.12 s: round(1.53) = 2
    (250, 25.0, 3),    # 10 s: 2.5 rounds half up to 3
    (1001, 29.97, 8),  # 33.4 s at NTSC rate
    (31, 7.5, 1),      # 4.13 s at a fractional rate
])
def test_clip_count_is_rounded_and_clips_cover_the_video(frames: int, fps: float, n_clips: int) -> None:
    probe = info(frames, fps)
    plans = plan_clips(probe, SamplingConfig())
    assert len(plans) == n_clips
    assert_covering(plans, probe)
    assert all(len(p.frame_indices) == 8 for p in plans)


def test_fewer_frames_than_k_repeats_frames_in_order() -> None:
    plans = plan_clips(info(5, 25.0), SamplingConfig(frames_per_clip=8))
    (plan,) = plans
    assert len(plan.frame_indices) == 8
    assert set(plan.frame_indices) == {0, 1, 2, 3, 4}
    assert list(plan.frame_indices) == sorted(plan.frame_indices)


def test_single_frame_video() -> None:
    (plan,) = plan_clips(info(1, 25.0), SamplingConfig(frames_per_clip=3))
    assert plan.frame_indices == (0, 0, 0)


def test_max_clips_per_video_keeps_covering_the_whole_video() -> None:
    probe = info(1500, 25.0)
    plans = plan_clips(probe, SamplingConfig(max_clips_per_video=3))
    assert [(p.t_start, p.t_end) for p in plans] == [(0.0, 20.0), (20.0, 40.0), (40.0, 60.0)]
    assert plans[-1].frame_indices[-1] >= 1400


def test_never_more_clips_than_frames() -> None:
    # 100 s at 0.1 fps: 25 clips of 4 s would leave most of them without a frame of their own.
    plans = plan_clips(ProbeInfo(100.0, 0.1, 64, 48, 10), SamplingConfig())
    assert len(plans) == 10
    assert [p.frame_indices[0] for p in plans] == list(range(10))


# ---------------------------------------------------------------------------- keyframe plans


def test_keyframe_mode_needs_keyframes() -> None:
    with pytest.raises(ValueError, match="key_indices"):
        plan_clips(info(100, 25.0), SamplingConfig(mode="keyframe"))


def test_dense_keyframes_are_spread_over_the_clip() -> None:
    keys = list(range(0, 300, 10))
    plans = plan_clips(info(300, 30.0), SamplingConfig(mode="keyframe", frames_per_clip=4, clip_seconds=5), keys)
    assert [p.frame_indices for p in plans] == [(20, 60, 90, 130), (170, 210, 240, 280)]


def test_few_keyframes_are_filled_with_the_frames_right_after_them() -> None:
    (plan,) = plan_clips(info(100, 25.0), SamplingConfig(mode="keyframe"), [0, 50])
    assert plan.frame_indices == (0, 1, 2, 3, 50, 51, 52, 53)


def test_runs_after_a_keyframe_stop_at_the_next_keyframe() -> None:
    (plan,) = plan_clips(info(100, 25.0), SamplingConfig(mode="keyframe"), [0, 2, 50])
    assert plan.frame_indices == (0, 1, 2, 3, 4, 50, 51, 52)


def test_clip_without_keyframe_uses_the_keyframe_before_it() -> None:
    # x264's default GOP of 250 frames: the 4 s clips between keyframes borrow the previous keyframe.
    plans = plan_clips(info(1500, 25.0), SamplingConfig(mode="keyframe"), [0, 250, 500, 750, 1000, 1250])
    assert plans[1].frame_indices == tuple(range(0, 8))        # frames 100–199: no keyframe of its own
    assert plans[2].frame_indices == tuple(range(250, 258))    # frames 200–299 contain keyframe 250
    assert plans[3].frame_indices == tuple(range(250, 258))


def test_keyframe_mode_with_fewer_frames_than_k() -> None:
    (plan,) = plan_clips(info(3, 25.0), SamplingConfig(mode="keyframe", frames_per_clip=5), [0])
    assert plan.frame_indices == (0, 0, 1, 1, 2)


@pytest.mark.parametrize("seed", range(5))
def test_keyframe_frames_are_always_cheap_to_decode(seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame_count = int(rng.integers(50, 3000))
    keys = sorted({0, *rng.integers(0, frame_count, size=int(rng.integers(1, 30))).tolist()})
    config = SamplingConfig(mode="keyframe", frames_per_clip=int(rng.integers(1, 17)),
                            clip_seconds=float(rng.uniform(0.5, 10)))
    probe = info(frame_count, float(rng.uniform(10, 60)))
    plans = plan_clips(probe, config, keys)
    assert_covering(plans, probe)
    for plan in plans:
        assert len(plan.frame_indices) == config.frames_per_clip
        for index in plan.frame_indices:  # never a seek deep into a GOP
            assert index - keyframe_of(keys, index) < config.frames_per_clip


# ---------------------------------------------------------------------------- grouping of reads


def test_group_clip_reads_joins_clips_of_one_gop_within_the_frame_budget() -> None:
    keys = [0, 250, 500, 750, 1000, 1250]
    plans = plan_clips(info(1500, 25.0), SamplingConfig())
    groups = group_clip_reads(plans, keys, max_frames=64)
    assert [p for group in groups for p in group] == plans
    # Clips 0-4 read frames 6…493 in one forward pass; clip 5 starts after keyframe 500, where decord
    # would seek anyway.
    assert [[p.clip_idx for p in g] for g in groups] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14]]
    for group in groups:
        assert sum(len(p.frame_indices) for p in group) <= 64
        for before, after in itertools.pairwise(group):
            assert keyframe_of(keys, min(after.frame_indices)) == keyframe_of(keys, max(before.frame_indices))
    assert all(len(g) == 1 for g in group_clip_reads(plans, keys, max_frames=8))


# ---------------------------------------------------------------------------- decoding real files


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s, 10 fps, 64x48, keyframe every 12 frames; frame i is grey level 8·i."""
    frames = (np.full((48, 64, 3), 8 * i, np.uint8) for i in range(30))
    return write_h264(tmp_path_factory.mktemp("sampling") / "grey.mp4", frames, fps=10,
                      options={"preset": "ultrafast", "g": "12", "crf": "10"})


@pytest.mark.parametrize("mode", ["uniform", "keyframe"])
def test_decode_clips_yields_planned_frames(video: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = SamplingConfig(mode=mode, clip_seconds=1.0, frames_per_clip=4)
    opened = []
    open_pyav = decode._PyAVFrames.open
    monkeypatch.setattr(decode._PyAVFrames, "open", lambda *args: opened.append(1) or open_pyav(*args))
    clips = list(decode_clips(video, config, frame_size=16))
    assert bool(opened) == (MODE_DECODERS[mode] == "pyav")  # uniform frames still come from decord alone
    with VideoSource(video, frame_size=16, decoder=MODE_DECODERS[mode]) as source:
        expected_plans = plan_clips(source.info, config, source.key_frame_indices())
        assert [plan for plan, _ in clips] == expected_plans
        for plan, frames in clips:
            assert frames.shape == (4, 16, 16, 3) and frames.dtype == np.uint8
            # Grouped reads return the same pixels as reading the clip on its own.
            np.testing.assert_array_equal(frames, source.read_frames(plan.frame_indices))
            levels = frames.reshape(4, -1).mean(axis=1)
            np.testing.assert_allclose(levels, [8 * i for i in plan.frame_indices], atol=4)
    if mode == "keyframe":  # keyframes 0, 12, 24 and the frames right after them
        assert [plan.frame_indices for plan, _ in clips] == [(0, 1, 2, 3), (12, 13, 14, 15), (24, 25, 26, 27)]


@pytest.fixture(scope="module")
def bframe_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s, 10 fps, 96x64 noise (a fresh picture every frame), B-frames, keyframe every 25 frames at most."""
    rng = np.random.default_rng(5)
    frames = (rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(60))
    return write_h264(tmp_path_factory.mktemp("sampling") / "noise.mp4", frames, fps=10,
                      options={"preset": "medium", "g": "25", "crf": "20", "x264-params": "scenecut=0"})


@pytest.mark.parametrize("mode", ["uniform", "keyframe"])
@pytest.mark.parametrize("resize", ["crop", "fit"])
def test_clips_are_the_same_frames_with_either_decoder(bframe_video: Path, mode: str, resize: str) -> None:
    assert MODE_DECODERS[mode] == "pyav"
    config = SamplingConfig(mode=mode, clip_seconds=1.5, frames_per_clip=6)
    fast = list(decode_clips(bframe_video, config, 32, resize=resize))
    exact = list(decode_clips(bframe_video, config, 32, resize=resize, decoder="decord"))
    assert [plan for plan, _ in fast] == [plan for plan, _ in exact]
    if mode == "keyframe":
        assert [plan.frame_indices[0] for plan, _ in fast] == [0, 25, 25, 50]  # the third clip borrows keyframe 25
    for (_, a), (_, b) in zip(fast, exact):
        assert a.shape == b.shape == (6, 32, 32, 3) and a.dtype == np.uint8
        assert np.abs(a.astype(int) - b).mean() < 5  # same frames, both scaled bilinearly


def test_decode_clips_rejects_an_unknown_decoder(video: Path) -> None:
    with pytest.raises(ValueError, match="decoder"):
        list(decode_clips(video, SamplingConfig(), 16, decoder="ffmpeg"))


@pytest.mark.parametrize("mode", ["uniform", "keyframe"])
def test_decode_clips_raises_decode_error_for_a_broken_file(tmp_path: Path, mode: str) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100)
    with pytest.raises(DecodeError, match="truncated or corrupt"):
        list(decode_clips(broken, SamplingConfig(mode=mode), frame_size=16))
