import numpy as np

from synthetic_clip import SyntheticClipConfig, SyntheticClipWorld


def test_pairs_are_unit_rows_grouped_by_video_and_reproducible():
    world = SyntheticClipWorld(SyntheticClipConfig(dim=128, semantic_dim=16, specific_dim=8))
    pairs = world.sample(30, captions_per_video=3, seed=4)
    assert pairs.video.shape == pairs.text.shape == (90, 128) and pairs.video.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(pairs.text, axis=1), 1.0, rtol=1e-5)
    assert pairs.video_index.tolist() == np.repeat(np.arange(30), 3).tolist()
    np.testing.assert_array_equal(pairs.video[0], pairs.video[2])  # one video row per caption
    again = SyntheticClipWorld(SyntheticClipConfig(dim=128, semantic_dim=16, specific_dim=8)).sample(30, 3, seed=4)
    np.testing.assert_array_equal(again.text, pairs.text)


def test_default_geometry_is_clip_like():
    pairs = SyntheticClipWorld().sample(300, seed=2)
    cosine = pairs.video @ pairs.text.T
    paired, unpaired = np.diag(cosine).mean(), cosine[~np.eye(300, dtype=bool)].mean()
    assert 0.28 < paired < 0.40 and 0.15 < unpaired < 0.27  # ViT-B/32: ~0.3 and ~0.2
    same_modality = (pairs.video @ pairs.video.T)[~np.eye(300, dtype=bool)].mean()
    assert same_modality > unpaired + 0.15  # the modality gap
