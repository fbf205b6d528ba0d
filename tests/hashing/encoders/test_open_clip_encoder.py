import json
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import open_clip
import pydantic
import pytest
import torch
from safetensors.torch import save_file

from hashing.encoders import FrameSpec, MediaEncoder
from hashing.encoders.open_clip_encoder import (OpenClipEncoder, build_encoder, cpu_stream_count,
                                                register_model_configs)
from hashing.encoders.weights import OpenClipEncoderConfig, WeightsUnavailableError, find_cached_pretrained

TINY = "reelhash-tiny"


def tiny_config(**overrides) -> OpenClipEncoderConfig:
    settings = {"arch": TINY, "allow_random_weights": True, "device": "cpu", **overrides}
    return OpenClipEncoderConfig(**settings)


@pytest.fixture(scope="module")
def tiny() -> OpenClipEncoder:
    return build_encoder(tiny_config())


def random_clips(n: int, k: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, k, size, size, 3), dtype=np.uint8)


def reference_model(seed: int) -> torch.nn.Module:
    """A tiny CLIP built with plain open_clip, independently of the encoder."""
    register_model_configs()
    torch.manual_seed(seed)
    return open_clip.create_model(TINY, pretrained=None).eval()


def reference_frame_embeddings(model: torch.nn.Module, frames: np.ndarray) -> np.ndarray:
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    pixels = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    with torch.inference_mode():
        return model.encode_image(pixels, normalize=True).numpy()


def save_state_dict(model: torch.nn.Module, path) -> None:
    torch.save(model.state_dict(), path)


# --- missing or unusable weights -------------------------------------------------------------


def test_no_weights_and_no_random_permission_explains_how_to_fix():
    with pytest.raises(WeightsUnavailableError) as caught:
        OpenClipEncoder(OpenClipEncoderConfig(arch=TINY, device="cpu"))
    message = str(caught.value)
    for hint in ("--clip-checkpoint", "--clip-pretrained", "--random-weights", "HF_HUB_OFFLINE"):
        assert hint in message


@pytest.mark.timeout(60)
def test_pretrained_tag_not_in_cache_fails_fast_without_network(tmp_path):
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="not in the local cache") as caught:
        build_encoder(OpenClipEncoderConfig(arch="ViT-B-32", pretrained="openai", cache_dir=str(tmp_path)))
    assert time.monotonic() - started < 5  # looked in the cache only, never waited on the network
    assert "timm/vit_base_patch32_clip_224.openai" in str(caught.value)
    assert "--clip-checkpoint" in str(caught.value)


def test_unknown_pretrained_tag_lists_the_known_ones(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="laion2b_s34b_b79k"):
        build_encoder(OpenClipEncoderConfig(arch="ViT-B-32", pretrained="nonsense", cache_dir=str(tmp_path)))


def test_cached_pretrained_found_in_hugging_face_cache_layout(tmp_path):
    repo_dir = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    revision = "0" * 40
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision)
    weights = repo_dir / "snapshots" / revision / "open_clip_model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not really weights")
    assert find_cached_pretrained("ViT-B-32", "OpenAI", cache_dir=str(tmp_path)) == weights


def test_cached_pretrained_found_in_url_download_cache(tmp_path):
    weights = tmp_path / "ViT-B-32.pt"  # where open_clip's URL download would have put it
    weights.write_bytes(b"not really weights")
    assert find_cached_pretrained("ViT-B-32", "openai", cache_dir=str(tmp_path)) == weights


def test_missing_checkpoint_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(WeightsUnavailableError, match="does not exist") as caught:
        build_encoder(OpenClipEncoderConfig(arch=TINY, checkpoint_path=str(missing), device="cpu"))
    assert str(missing) in str(caught.value)
    with pytest.raises(WeightsUnavailableError, match="is a directory"):
        build_encoder(OpenClipEncoderConfig(arch=TINY, checkpoint_path=str(tmp_path), device="cpu"))


def test_checkpoint_for_another_model_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"some.other.weight": torch.zeros(3)}, path)
    with pytest.raises(WeightsUnavailableError, match="could not load CLIP weights"):
        build_encoder(OpenClipEncoderConfig(arch=TINY, checkpoint_path=str(path), device="cpu"))


def test_config_rejects_two_weight_sources_and_treats_blank_as_unset():
    with pytest.raises(pydantic.ValidationError, match="not both"):
        OpenClipEncoderConfig(pretrained="openai", checkpoint_path="/x.pt")
    assert OpenClipEncoderConfig(pretrained=" ", checkpoint_path="").pretrained is None
    with pytest.raises(pydantic.ValidationError):
        OpenClipEncoderConfig(batch_size=0)


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        build_encoder(tiny_config(arch="ViT-Z-99"))


# --- random tiny model -----------------------------------------------------------------------


def test_tiny_encoder_contract(tiny):
    assert isinstance(tiny, MediaEncoder)
    assert tiny.weights_are_random
    assert tiny.embed_dim == 64
    assert tiny.frame_spec == FrameSpec(
        size=64, mean=tuple(open_clip.OPENAI_DATASET_MEAN), std=tuple(open_clip.OPENAI_DATASET_STD)
    )
    assert tiny.encoder_id.startswith("reelhash-tiny-random0-")


def test_shapes_dtypes_and_unit_norms(tiny):
    clips = random_clips(5, 3)
    for embeddings, n in (
        (tiny.encode_clips(clips), 5),
        (tiny.encode_frames(clips[:, 0]), 5),
        (tiny.encode_text(["a dog runs", "a cat sleeps", ""]), 3),
    ):
        assert embeddings.shape == (n, 64)
        assert embeddings.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert tiny.encode_clips(random_clips(0, 3)).shape == (0, 64)
    assert tiny.encode_text([]).shape == (0, 64)


def test_clip_embedding_is_mean_pooled_unit_frame_embeddings(tiny):
    clips = random_clips(2, 4, seed=1)
    frames = tiny.encode_frames(clips.reshape(-1, 64, 64, 3)).reshape(2, 4, -1)
    pooled = frames.mean(axis=1)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(tiny.encode_clips(clips), pooled, atol=1e-5)


def test_single_clip_encodes_the_same_alone_and_in_any_batching(tiny):
    clips = random_clips(7, 3, seed=2)
    together = tiny.encode_clips(clips)
    np.testing.assert_allclose(tiny.encode_clips(clips[4:5]), together[4:5], atol=1e-5)
    one_clip_per_pass = build_encoder(tiny_config(batch_size=4))  # 4 // 3 frames -> one clip per pass
    np.testing.assert_allclose(one_clip_per_pass.encode_clips(clips), together, atol=1e-5)
    texts = [f"caption {i}" for i in range(5)]
    np.testing.assert_allclose(one_clip_per_pass.encode_text(texts), tiny.encode_text(texts), atol=1e-5)


def test_cpu_streams_default_to_one_per_torch_thread_and_only_on_a_cpu():
    assert cpu_stream_count(None, torch.device("cpu"), 2) == 2
    assert cpu_stream_count(None, torch.device("cpu"), 0) == 1
    assert cpu_stream_count(3, torch.device("cpu"), 2) == 3
    assert cpu_stream_count(None, torch.device("cuda"), 8) == 1
    assert cpu_stream_count(4, torch.device("cuda"), 8) == 1
    with pytest.raises(pydantic.ValidationError):
        tiny_config(cpu_streams=0)


def test_streams_give_the_same_embeddings_as_one_pass_at_a_time():
    one = build_encoder(tiny_config(cpu_streams=1, batch_size=12))
    three = build_encoder(tiny_config(cpu_streams=3, batch_size=12))
    assert (one.streams, three.streams) == (1, 3)
    # 4 clips per pass at most: one stream encodes 4 + 3 clips, three streams share them out as 3 + 3 + 1.
    clips = random_clips(7, 3, seed=6)
    np.testing.assert_allclose(three.encode_clips(clips), one.encode_clips(clips), atol=1e-6)
    frames = clips.reshape(-1, 64, 64, 3)
    np.testing.assert_allclose(three.encode_frames(frames), one.encode_frames(frames), atol=1e-6)
    np.testing.assert_allclose(three.encode_clips(clips[:1]), one.encode_clips(clips[:1]), atol=1e-6)


def test_each_stream_runs_its_passes_on_one_thread_of_its_own(monkeypatch):
    encoder = build_encoder(tiny_config(cpu_streams=2))
    caller_threads = torch.get_num_threads()
    seen: list[tuple[int, int, bool]] = []
    barrier = threading.Barrier(2, timeout=30)  # both passes must be running at once to get past it
    frame_embeddings = encoder._frame_embeddings

    def recording(frames):
        seen.append((threading.get_ident(), torch.get_num_threads(), torch.is_inference_mode_enabled()))
        barrier.wait()
        return frame_embeddings(frames)

    monkeypatch.setattr(encoder, "_frame_embeddings", recording)
    encoder.encode_clips(random_clips(4, 2, seed=7))
    assert len(seen) == 2 and len({ident for ident, _, _ in seen}) == 2
    assert threading.get_ident() not in {ident for ident, _, _ in seen}
    assert all(threads == 1 and inference for _, threads, inference in seen)
    assert torch.get_num_threads() == caller_threads  # the caller's own thread count is left alone


def test_same_seed_is_deterministic_across_constructions(tiny):
    again = build_encoder(tiny_config())
    clips = random_clips(3, 2, seed=3)
    assert again.encoder_id == tiny.encoder_id
    np.testing.assert_array_equal(again.encode_clips(clips), tiny.encode_clips(clips))
    np.testing.assert_array_equal(again.encode_text(["a red car"]), tiny.encode_text(["a red car"]))


def test_different_seed_gives_different_model_and_id(tiny):
    other = build_encoder(tiny_config(random_seed=1))
    assert other.encoder_id != tiny.encoder_id
    clips = random_clips(2, 2, seed=4)
    assert not np.allclose(other.encode_clips(clips), tiny.encode_clips(clips), atol=1e-3)


def test_building_does_not_disturb_the_callers_random_state():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_encoder(tiny_config(random_seed=9))
    torch.testing.assert_close(torch.rand(3), expected)


def test_input_validation(tiny):
    with pytest.raises(ValueError, match="uint8"):
        tiny.encode_clips(random_clips(1, 2).astype(np.float32))
    with pytest.raises(ValueError, match="S=64"):
        tiny.encode_clips(random_clips(1, 2, size=32))
    with pytest.raises(ValueError, match=r"\[N, S, S, 3\]"):
        tiny.encode_frames(random_clips(1, 2))
    with pytest.raises(ValueError, match="list of strings"):
        tiny.encode_text("just one string")


def test_bf16_autocast_on_cpu_stays_close_to_fp32(tiny):
    low = build_encoder(tiny_config(precision="bf16"))
    assert low.encoder_id == tiny.encoder_id  # precision is not part of the identity
    clips = random_clips(2, 2, seed=5)
    cosine = np.sum(low.encode_clips(clips) * tiny.encode_clips(clips), axis=1)
    assert np.all(cosine > 0.98)


# --- local checkpoints -----------------------------------------------------------------------


def test_checkpoint_round_trip_matches_the_saved_model(tmp_path):
    model = reference_model(seed=5)
    path = tmp_path / "tiny.pt"
    save_state_dict(model, path)
    # fp32: the comparison is with open_clip's own fp32 model (the CPU default may run images in bf16).
    encoder = build_encoder(OpenClipEncoderConfig(arch=TINY, checkpoint_path=str(path), device="cpu", precision="fp32"))
    assert not encoder.weights_are_random
    frames = random_clips(3, 1, seed=6)[:, 0]
    np.testing.assert_allclose(encoder.encode_frames(frames), reference_frame_embeddings(model, frames), atol=1e-5)
    texts = ["a man is cooking", "two dogs play"]
    with torch.inference_mode():
        expected_text = model.encode_text(open_clip.get_tokenizer(TINY)(texts), normalize=True).numpy()
    np.testing.assert_allclose(encoder.encode_text(texts), expected_text, atol=1e-5)


def test_wrapped_and_safetensors_checkpoints_load_the_same_weights(tmp_path):
    model = reference_model(seed=6)
    wrapped = tmp_path / "train_checkpoint.pt"  # open_clip training output: {"state_dict": module.*}
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, wrapped)
    safe = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(safe))
    frames = random_clips(2, 1, seed=7)[:, 0]
    expected = reference_frame_embeddings(model, frames)
    for path in (wrapped, safe):
        encoder = build_encoder(OpenClipEncoderConfig(arch=TINY, checkpoint_path=str(path), device="cpu",
                                                      precision="fp32"))
        np.testing.assert_allclose(encoder.encode_frames(frames), expected, atol=1e-5)


def test_encoder_id_follows_checkpoint_content_not_location(tmp_path):
    path = tmp_path / "weights.pt"
    save_state_dict(reference_model(seed=1), path)
    first = build_encoder(OpenClipEncoderConfig(arch=TINY, checkpoint_path=str(path), device="cpu"))
    copy = tmp_path / "elsewhere" / "weights.pt"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    moved = build_encoder(OpenClipEncoderConfig(arch=TINY, checkpoint_path=str(copy), device="cpu"))
    assert moved.encoder_id == first.encoder_id
    save_state_dict(reference_model(seed=2), path)  # overwritten in place with other weights
    retrained = build_encoder(OpenClipEncoderConfig(arch=TINY, checkpoint_path=str(path), device="cpu"))
    assert retrained.encoder_id != first.encoder_id


def test_describe_round_trips_through_json(tmp_path, tiny):
    path = tmp_path / "tiny.pt"
    save_state_dict(reference_model(seed=3), path)
    for encoder in (tiny, build_encoder(OpenClipEncoderConfig(arch=TINY, checkpoint_path=str(path), device="cpu"))):
        description = json.loads(json.dumps(encoder.describe()))
        assert description["encoder_id"] == encoder.encoder_id
        assert description["frame_size"] == 64 and description["embed_dim"] == 64
        config = OpenClipEncoderConfig.from_description(description, device="cpu", batch_size=8)
        rebuilt = build_encoder(config, expected_encoder_id=description["encoder_id"])
        assert rebuilt.encoder_id == encoder.encoder_id
    with pytest.raises(ValueError, match="does not match"):
        build_encoder(tiny_config(random_seed=4), expected_encoder_id=tiny.encoder_id)


# --- one real architecture -------------------------------------------------------------------


def test_vit_b_32_builds_offline_with_the_bundled_tokenizer():
    encoder = build_encoder(OpenClipEncoderConfig(arch="ViT-B-32", allow_random_weights=True, device="cpu"))
    assert encoder.frame_spec.size == 224
    assert encoder.embed_dim == 512
    assert encoder.encode_text(["a dog"]).shape == (1, 512)


def test_random_weights_are_identical_in_another_process(tiny):
    # Index-time (a Ray actor) and query-time (the CLI) encoders live in different processes.
    script = (
        "import json, numpy as np\n"
        "from hashing.encoders.open_clip_encoder import build_encoder\nfrom hashing.encoders.weights import OpenClipEncoderConfig\n"
        f"e = build_encoder(OpenClipEncoderConfig(arch='{TINY}', allow_random_weights=True, device='cpu'))\n"
        "clips = np.random.default_rng(11).integers(0, 256, (2, 2, 64, 64, 3), dtype=np.uint8)\n"
        "print(json.dumps({'id': e.encoder_id, 'clips': e.encode_clips(clips).tolist(),\n"
        "                  'text': e.encode_text(['a dog']).tolist()}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    other = json.loads(result.stdout.strip().splitlines()[-1])
    clips = np.random.default_rng(11).integers(0, 256, (2, 2, 64, 64, 3), dtype=np.uint8)
    assert other["id"] == tiny.encoder_id
    np.testing.assert_allclose(np.array(other["clips"], dtype=np.float32), tiny.encode_clips(clips), atol=1e-6)
    np.testing.assert_allclose(np.array(other["text"], dtype=np.float32), tiny.encode_text(["a dog"]), atol=1e-6)


# --- text encoding without the padding ---------------------------------------------------------


def test_trimmed_text_encoding_equals_open_clips_own(tiny):
    from hashing.encoders.open_clip_encoder import encode_text_trimmed

    model = reference_model(seed=0)
    tokenizer = open_clip.get_tokenizer(TINY)
    captions = ["a red square slides left", "x", "a long caption about a green circle that grows and then shrinks "
                "again while the background stays a plain dark gradient", ""]
    tokens = tokenizer(captions)
    with torch.inference_mode():
        full = model.encode_text(tokens)
        trimmed = encode_text_trimmed(model, tokens)
        one = encode_text_trimmed(model, tokens[1:2])  # alone: trimmed to its own short length
    assert trimmed.shape == full.shape
    assert torch.allclose(trimmed, full, atol=1e-5)
    assert torch.allclose(one, full[1:2], atol=1e-5)


def test_encoder_text_embeddings_match_the_reference_model(tiny):
    model = reference_model(seed=tiny.config.random_seed)
    tokens = open_clip.get_tokenizer(TINY)(["a red square slides left", "blue"])
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()
    assert np.allclose(tiny.encode_text(["a red square slides left", "blue"]), expected, atol=1e-5)
