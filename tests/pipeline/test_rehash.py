"""Tests for pipeline/rehash.py: re-hash a published index with another model from cached features only."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from hashing.bits import codes_from_arrow
from hashing.encoders import OpenClipEncoderConfig
from hashing.hashers import make_hasher
from pipeline.codes import read_code_run, write_code_run
from pipeline.features import load_collection_features
from pipeline.models import resolve_model_id, load_model, model_summary, save_model
from pipeline.publish import CollectionCodes, publish_index, read_current_manifest, verify_version, with_catalog_columns
from pipeline.rehash import (
    MissingFeaturesError,
    check_cached_features,
    evaluate_model,
    hash_collection,
    extract_command,
    model_extract_command,
    plan_rehash,
    publish_rehash,
)
from pipeline.sampling import SamplingConfig
from pipeline.store import StoreLayout

DIM = 16
OLD_SAMPLING = SamplingConfig(clip_seconds=4.0, frames_per_clip=4)
NEW_SAMPLING = SamplingConfig(clip_seconds=2.0, frames_per_clip=8)
OLD_ENCODER = OpenClipEncoderConfig(arch="reelhash-tiny", allow_random_weights=True)
NEW_ENCODER = OpenClipEncoderConfig(arch="reelhash-tiny", checkpoint_path="/models/tiny.pt")


def _videos(collection: str, n: int) -> list[dict]:
    return [{"uri": f"{collection}_{i}.mp4", "caption": f"{collection} caption {i}", "labels": [f"l{i % 3}"],
             "split": "test" if i % 2 else "train"} for i in range(n)]


def _embeddings(videos: list[dict], seed: int) -> tuple[dict, dict]:
    """Two clips per video around a random direction; each caption close to its video."""
    rng = np.random.default_rng(seed)
    clips, texts = {}, {}
    for video in videos:
        centre = rng.normal(size=DIM)
        clips[video["uri"]] = np.stack([centre + 0.1 * rng.normal(size=DIM) for _ in range(2)]).astype(np.float32)
        texts[video["caption"]] = (centre + 0.2 * rng.normal(size=DIM)).astype(np.float32)
    return clips, texts


def _save(layout: StoreLayout, model_id: str, method: str, encoder_id: str, encoder: OpenClipEncoderConfig,
          sampling: SamplingConfig, training: np.ndarray) -> None:
    hasher = make_hasher(method, 16, seed=1).fit(training)
    save_model(layout, model_id, hasher=hasher, encoder_config=encoder,
               encoder_info={"encoder": "open_clip", "encoder_id": encoder_id, "embed_dim": DIM},
               sampling=sampling, training={})


def _publish_with_old_model(layout: StoreLayout, collections: list[str]) -> None:
    """Hash the collections' old-encoder features with model 'old' and publish them as the next version."""
    old = load_model(layout, "old")
    published = []
    for name in collections:
        found = load_collection_features(layout, name, "enc-old", OLD_SAMPLING)
        run = write_code_run(layout, model_id=old.model_id, collection=name, hasher=old.hasher, clip_features=found.clips,
                             videos=found.videos)
        published.append(CollectionCodes(name, str(run.run_dir.relative_to(layout.root)),
                                         with_catalog_columns(read_code_run(run.run_dir, run.manifest), found.catalog)))
    publish_index(layout, "main", model_id=old.model_id, code_bits=16, collections=published,
                  metrics={"alpha": {"text_to_video.hash.R@1": 1.0}}, model_info=model_summary(old))


@pytest.fixture
def store(tmp_path, fabricate_collection):
    """Index 'main' v1 of collections 'alpha' and 'beta', hashed by an LSH model on the old encoder's features;
    cached features of a new encoder + sampling too, and an ITQ model 'new' fitted on them."""
    layout = StoreLayout(tmp_path)
    old_training, new_training = [], []
    for seed, name in enumerate(("alpha", "beta")):
        videos = _videos(name, 6)
        old_clips, old_texts = _embeddings(videos, seed)
        fabricate_collection(layout, name, videos, encoder_id="enc-old", sampling=OLD_SAMPLING,
                             clip_embeddings=old_clips, text_embeddings=old_texts)
        new_clips, new_texts = _embeddings(videos, 100 + seed)
        fabricate_collection(layout, name, videos, encoder_id="enc-new", sampling=NEW_SAMPLING,
                             clip_embeddings=new_clips, text_embeddings=new_texts)
        old_training += list(old_clips.values())
        new_training += list(new_clips.values()) + [np.stack(list(new_texts.values()))]
    _save(layout, "old", "lsh", "enc-old", OLD_ENCODER, OLD_SAMPLING, np.concatenate(old_training))
    _save(layout, "new", "itq", "enc-new", NEW_ENCODER, NEW_SAMPLING, np.concatenate(new_training))
    _publish_with_old_model(layout, ["alpha", "beta"])
    return layout


def _rehash(layout: StoreLayout, model_id: str = "new"):
    plan = plan_rehash(layout, "main", model_id)
    model = load_model(layout, model_id)
    runs = {name: hash_collection(layout, name, model).run_dir for name in plan.collections}
    metrics = {name: {"n": 1} for name in plan.collections}
    return plan, runs, publish_rehash(layout, "main", model, runs, metrics)


def test_plan_names_the_published_version_and_every_collection(store):
    plan = plan_rehash(store, "main", "new")
    assert (plan.from_version, plan.from_model_id, plan.model_id, plan.code_bits) == (
        1, resolve_model_id(store, "old"), resolve_model_id(store, "new"), 16)
    assert plan.collections == {"alpha": 6, "beta": 6}
    assert plan.from_metrics == {"alpha": {"text_to_video.hash.R@1": 1.0}}


def test_rehash_publishes_a_new_version_with_the_new_models_codes_without_decoding(store, no_decoding):
    plan, runs, result = _rehash(store)
    assert result.published and result.version == 2
    version, version_dir, manifest = read_current_manifest(store, "main")
    assert version == 2 and verify_version(version_dir, manifest) == []
    assert manifest["model_id"] == resolve_model_id(store, "new") and manifest["model"]["encoder_id"] == "enc-new"
    assert manifest["model"]["sampling"] == NEW_SAMPLING.model_dump()
    assert set(manifest["collections"]) == {"alpha", "beta"} and manifest["counts"]["videos"] == 12
    assert manifest["metrics"] == {"alpha": {"n": 1}, "beta": {"n": 1}}
    ids = pq.read_table(version_dir / manifest["shards"][0]["ids_file"])
    model = load_model(store, "new")
    for name in ("alpha", "beta"):
        found = load_collection_features(store, name, "enc-new", NEW_SAMPLING)
        expected = model.hasher.encode(found.clips["embedding"].combine_chunks().flatten().to_numpy(
            zero_copy_only=False).astype(np.float32).reshape(-1, DIM))
        mine = ids.filter(np.asarray(ids["collection"].to_numpy(zero_copy_only=False) == name))
        assert mine.num_rows == found.clips.num_rows == 12  # 6 videos x 2 clips
        assert np.array_equal(codes_from_arrow(mine["code"]), expected)
        assert all(uri.startswith(name) for uri in mine["uri"].to_pylist())
        assert all(caption.startswith(name) for caption in mine["caption"].to_pylist())
    assert no_decoding == []


def test_rehash_again_changes_nothing(store):
    _, first_runs, first = _rehash(store)
    _, runs, again = _rehash(store)
    assert runs == first_runs
    assert not again.published and again.version == first.version == 2


def test_evaluation_scores_the_test_split_from_cached_embeddings(store, no_decoding):
    metrics = evaluate_model(store, "alpha", load_model(store, "new"))
    assert metrics["evaluated"] and metrics["eval_set"] == "test split" and metrics["n_videos"] == 3
    assert metrics["code_bits"] == 16 and metrics["method"] == "itq"
    # Captions lie near their own video, so float cosine retrieval is perfect on this data.
    assert metrics["text_to_video"]["float"]["R@1"] == 100.0
    assert metrics["captions_without_cached_embedding"] == 0
    assert no_decoding == []


def test_a_collection_without_features_for_the_new_encoder_is_a_clear_error(store, fabricate_collection):
    videos = _videos("gamma", 3)
    clips, texts = _embeddings(videos, 7)
    fabricate_collection(store, "gamma", videos, encoder_id="enc-old", sampling=OLD_SAMPLING,
                         clip_embeddings=clips, text_embeddings=texts)
    _publish_with_old_model(store, ["alpha", "beta", "gamma"])
    with pytest.raises(MissingFeaturesError) as error:
        plan_rehash(store, "main", "new")
    message = str(error.value)
    assert "collection 'gamma'" in message and "enc-new" in message and "never decodes" in message
    assert "3 of its 3 indexable videos" in message
    assert "reelhash index SOURCE --collection gamma --model new --index SCRATCH_INDEX" in message


def test_partly_missing_features_name_the_videos(store, fabricate_collection):
    videos = _videos("delta", 4)
    clips, texts = _embeddings(videos, 9)
    del clips["delta_2.mp4"]
    fabricate_collection(store, "delta", videos, encoder_id="enc-new", sampling=NEW_SAMPLING,
                         clip_embeddings=clips, text_embeddings=texts)
    with pytest.raises(MissingFeaturesError, match=r"1 of its 4 indexable videos lack them \(delta_2.mp4\)"):
        check_cached_features(store, "delta", encoder_id="enc-new", sampling=NEW_SAMPLING, how_to_extract="x")


def test_videos_that_already_failed_to_decode_are_not_required(store, fabricate_collection):
    videos = _videos("eps", 4)
    clips, texts = _embeddings(videos, 11)
    del clips["eps_3.mp4"]
    failure = {"video_id": None, "fingerprint": "fp-eps_3.mp4", "error": "truncated"}
    from pipeline.catalog import video_id

    failure["video_id"] = video_id("eps", "eps_3.mp4")
    fabricate_collection(store, "eps", videos, encoder_id="enc-new", sampling=NEW_SAMPLING,
                         clip_embeddings=clips, text_embeddings=texts, failures=[failure])
    counts = check_cached_features(store, "eps", encoder_id="enc-new", sampling=NEW_SAMPLING, how_to_extract="x")
    assert counts == {"videos": 3}
    run = hash_collection(store, "eps", load_model(store, "new"))
    assert len(run.manifest["videos"]) == 3


def test_an_uncataloged_collection_says_what_to_run(store):
    with pytest.raises(MissingFeaturesError, match="has no catalog.*index it first: reelhash index SOURCE"):
        check_cached_features(store, "nowhere", encoder_id="enc-new", sampling=NEW_SAMPLING,
                              how_to_extract=model_extract_command("nowhere", "new"))


def test_unknown_model_or_index_fail_before_any_work(store):
    from hashing.hashers import ModelLoadError
    from pipeline.publish import IndexNotFoundError

    with pytest.raises(ModelLoadError, match="model 'nope' not found"):
        plan_rehash(store, "main", "nope")
    with pytest.raises(IndexNotFoundError, match="index 'other' has no published version"):
        plan_rehash(store, "other", "new")


def test_extract_command_names_the_encoder_weights_and_sampling():
    sampling = SamplingConfig(mode="keyframe", clip_seconds=6.0, frames_per_clip=4)
    assert extract_command("c", OpenClipEncoderConfig(arch="ViT-B-32", pretrained="openai"), sampling) == (
        "reelhash index SOURCE --collection c --index SCRATCH_INDEX --refit --clip-arch ViT-B-32 "
        "--clip-pretrained openai --sampling keyframe --clip-seconds 6 --frames-per-clip 4")
    assert "--clip-arch reelhash-tiny --clip-checkpoint /models/tiny.pt" in extract_command("c", NEW_ENCODER, sampling)
    assert "--random-weights" in extract_command("c", OLD_ENCODER, sampling)


def test_a_caption_without_cached_embedding_is_left_out_of_scoring(tmp_path, fabricate_collection, no_decoding):
    layout = StoreLayout(tmp_path)
    videos = _videos("zeta", 6) + [{"uri": "broken.mp4", "caption": "never cached", "status": "failed", "error": "x"}]
    clips, texts = _embeddings(videos[:6], 13)
    del texts["zeta caption 5"]  # a test-split video whose caption embedding is missing from the cache
    fabricate_collection(layout, "zeta", videos, encoder_id="enc-new", sampling=NEW_SAMPLING,
                         clip_embeddings=clips, text_embeddings=texts)
    _save(layout, "new", "lsh", "enc-new", NEW_ENCODER, NEW_SAMPLING, np.concatenate(list(clips.values())))
    metrics = evaluate_model(layout, "zeta", load_model(layout, "new"))
    assert metrics["eval_set"] == "test split" and metrics["n_videos"] == 2
    assert metrics["captions_without_cached_embedding"] == 1  # the failed file's caption does not count
