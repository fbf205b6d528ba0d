"""Tests for pipeline/encoder_pool.py on the shared Ray instance: batches by reference, failure rows, the least
busy actor, refusals and failures that must not hang."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import ray

from hashing.encoders import OpenClipEncoderConfig, build_media_encoder
from pipeline.encoder_pool import CPU_ACTOR_CALLS_AT_ONCE, QUEUED_CALLS_PER_ACTOR, ClipEncoderActor, EncoderPool
from pipeline.extract import END_OF_VIDEO
from pipeline.ray_runtime import UnschedulableError

TINY = OpenClipEncoderConfig(arch="reelhash-tiny", allow_random_weights=True, device="cpu")


def clip_batch(video: str, n_clips: int, seed: int, failed: bool = False) -> dict:
    """A batch as a decoder actor yields it: clips, then an end-of-video row (or one failure row)."""
    size = build_media_encoder(TINY).frame_spec.size
    frames = np.random.default_rng(seed).integers(0, 256, (n_clips + 1, 2, size, size, 3), dtype=np.uint8)
    clip_idx = np.array([*range(n_clips), END_OF_VIDEO])
    error = np.array([""] * (n_clips + 1), dtype=object)
    if failed:
        clip_idx, error = np.array([-1]), np.array(["cannot decode"], dtype=object)
        frames = frames[:1]
    batch = {"video_id": np.array([video] * len(clip_idx), dtype=object), "clip_idx": clip_idx, "error": error,
             "frames": frames}
    return batch


@pytest.fixture(scope="module")
def pool(ray_instance):
    started = EncoderPool.start(TINY, size=2, encoder_cpus=0.5, batch_size=2)
    started.wait_ready(timeout_s=120)
    yield started
    started.shutdown()


def test_batches_are_encoded_in_order_without_frames(pool):
    first = clip_batch("a", 3, seed=1)
    second = clip_batch("b", 1, seed=2)
    failed = clip_batch("c", 0, seed=3, failed=True)
    out = ray.get(pool.submit([ray.put(first), ray.put(second), ray.put(failed)]))

    assert "frames" not in out
    assert out["video_id"].tolist() == ["a"] * 4 + ["b"] * 2 + ["c"]
    assert out["clip_idx"].tolist() == [0, 1, 2, END_OF_VIDEO, 0, END_OF_VIDEO, -1]
    encoder = build_media_encoder(TINY)
    expected = encoder.encode_clips(np.concatenate([first["frames"][:3], second["frames"][:1]]))
    np.testing.assert_allclose(out["embedding"][[0, 1, 2, 4]].astype(np.float32), expected, atol=2e-3)
    assert out["embedding"].dtype == np.float16 and not out["embedding"][[3, 5, 6]].any()


def test_calls_go_to_the_least_busy_actor_and_wait_when_all_are_full(pool):
    ref = ray.put(clip_batch("a", 1, seed=4))
    calls = [pool.submit([ref]) for _ in range(2 * (1 + QUEUED_CALLS_PER_ACTOR) + 1)]
    assert all(len(refs) <= 1 + QUEUED_CALLS_PER_ACTOR for refs in pool.in_flight.values())
    assert len(ray.get(calls)) == len(calls)


def test_a_request_no_node_can_hold_is_refused_before_any_actor_starts(ray_instance):
    with pytest.raises(UnschedulableError, match="encoder actor"):
        EncoderPool.start(TINY, size=1, encoder_cpus=10_000, batch_size=2)


def test_an_actor_whose_encoder_cannot_be_built_fails_instead_of_hanging(ray_instance, tmp_path):
    broken = OpenClipEncoderConfig(arch="reelhash-tiny", checkpoint_path=str(tmp_path / "gone.pt"), device="cpu")
    failing = EncoderPool.start(broken, size=1, encoder_cpus=0.5, batch_size=2)
    try:
        with pytest.raises(ray.exceptions.RayActorError, match="gone.pt"):
            failing.wait_ready(timeout_s=120)
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(failing.submit([ray.put(clip_batch("a", 1, seed=5))]), timeout=120)
    finally:
        failing.shutdown()
        failing.shutdown()  # twice is harmless: a run shuts its pool down early and again at the end


def wait_until_gone(names: list[str], timeout_s: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not set(names) & set(ray.util.list_named_actors()):
            return True
        time.sleep(0.2)
    return False


def test_a_named_pool_is_taken_over_with_the_same_actors(ray_instance):
    started = EncoderPool.start(TINY, size=2, encoder_cpus=0.25, batch_size=2, name="test-pool-a")
    taken = EncoderPool.take_over("test-pool-a", size=2)
    try:
        assert taken is not None and taken.taken_over and not started.taken_over
        assert [a._actor_id for a in taken.actors] == [a._actor_id for a in started.actors]
        taken.wait_ready(timeout_s=120)
    finally:
        started.shutdown(graceful=False)
    assert wait_until_gone(["test-pool-a-0", "test-pool-a-1"])


def test_a_named_pool_missing_an_actor_is_not_taken_over_and_the_rest_is_stopped(ray_instance):
    started = EncoderPool.start(TINY, size=1, encoder_cpus=0.25, batch_size=2, name="test-pool-b")
    assert EncoderPool.take_over("test-pool-b", size=2) is None
    assert wait_until_gone(["test-pool-b-0"])
    started.shutdown(graceful=False)


def test_stop_named_stops_only_that_pool(ray_instance):
    ours = EncoderPool.start(TINY, size=1, encoder_cpus=0.25, batch_size=2, name="test-pool-c")
    other = EncoderPool.start(TINY, size=1, encoder_cpus=0.25, batch_size=2, name="test-pool-d")
    try:
        EncoderPool.stop_named("test-pool-c")
        assert wait_until_gone(["test-pool-c-0"])
        assert "test-pool-d-0" in ray.util.list_named_actors()
    finally:
        ours.shutdown(graceful=False)
        other.shutdown(graceful=False)


def overlapping_calls(actor: ClipEncoderActor, monkeypatch: pytest.MonkeyPatch) -> int:
    """The most encoder calls the actor ran at once when two of its calls came from two threads together."""
    running, most, lock = [0], [0], threading.Lock()
    both_in = threading.Barrier(2, timeout=2)  # passed only if the other call is let in meanwhile
    encode_clips = actor.encoder.encode_clips

    def counting(clips):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            both_in.wait()
        except threading.BrokenBarrierError:
            pass
        try:
            return encode_clips(clips)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(actor.encoder, "encode_clips", counting)
    batch = clip_batch("a", 2, seed=5)
    threads = [threading.Thread(target=actor, args=(batch,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return most[0]


def test_an_actor_with_cpu_streams_runs_its_calls_at_once(monkeypatch):
    actor = ClipEncoderActor(TINY.model_copy(update={"cpu_streams": 2}).model_dump(), batch_size=4)
    assert actor.encoder.streams == 2 and CPU_ACTOR_CALLS_AT_ONCE == 2
    assert overlapping_calls(actor, monkeypatch) == 2


def test_an_actor_without_cpu_streams_runs_one_call_at_a_time(monkeypatch):
    actor = ClipEncoderActor(TINY.model_copy(update={"cpu_streams": 1}).model_dump(), batch_size=4)
    assert actor.encoder.streams == 1
    assert overlapping_calls(actor, monkeypatch) == 1
