import numpy as np
import pytest

from hashing.bits import hamming_distances
from hashing.hashers import Hasher, ItqHasher, LshHasher, known_methods, make_hasher
from hashing.index import hamming_topk


def clustered(n, dim=64, n_clusters=10, noise=1.0, seed=0):
    """Unnormalised points around random centres, with their cluster labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim))
    labels = rng.integers(0, n_clusters, size=n)
    return centres[labels] + noise * rng.standard_normal((n, dim)), labels


def test_registry_builds_known_methods_and_rejects_unknown():
    assert {"lsh", "itq"} <= set(known_methods())
    assert isinstance(make_hasher("lsh", 64), LshHasher)
    itq = make_hasher("itq", 32, seed=3)
    assert isinstance(itq, ItqHasher) and itq.n_bits == 32 and itq.seed == 3
    with pytest.raises(ValueError, match="known methods: .*itq.*lsh"):
        make_hasher("nope", 64)
    with pytest.raises(ValueError, match="multiple of 8"):
        make_hasher("lsh", 12)


@pytest.mark.parametrize("method", ["lsh", "itq"])
def test_encode_shape_dtype_and_config(method):
    x, _ = clustered(300)
    hasher = make_hasher(method, 32, seed=1)
    assert not hasher.is_fitted
    with pytest.raises(RuntimeError, match="not fitted"):
        hasher.encode(x)
    assert hasher.fit(x) is hasher and hasher.is_fitted
    codes = hasher.encode(x)
    assert codes.shape == (300, 4) and codes.dtype == np.uint8
    config = hasher.config()
    assert config["method"] == method and config["n_bits"] == 32 and config["dim"] == 64 and config["seed"] == 1
    assert set(hasher.state()) == {"mean", "projection"}


@pytest.mark.parametrize("method", ["lsh", "itq"])
def test_single_row_encodes_like_batch(method):
    x, _ = clustered(500, dim=96)
    hasher = make_hasher(method, 64).fit(x)
    batch = hasher.encode(x)
    singles = np.concatenate([hasher.encode(x[i : i + 1]) for i in range(200)])
    assert np.array_equal(singles, batch[:200])
    # float16 / float32 inputs, as cached features come, encode the same way in a batch or alone
    half = x.astype(np.float16)
    assert np.array_equal(hasher.encode(half[5:6]), hasher.encode(half)[5:6])


@pytest.mark.parametrize("method", ["lsh", "itq"])
def test_deterministic_for_a_seed(method):
    x, _ = clustered(400)
    a = make_hasher(method, 32, seed=7).fit(x).encode(x)
    b = make_hasher(method, 32, seed=7).fit(x).encode(x)
    c = make_hasher(method, 32, seed=8).fit(x).encode(x)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("method", ["lsh", "itq"])
def test_inputs_are_l2_normalised(method):
    x, _ = clustered(300)
    hasher = make_hasher(method, 32).fit(x)
    scales = np.random.default_rng(0).uniform(0.1, 10.0, size=(300, 1))
    assert np.array_equal(hasher.encode(x * scales), hasher.encode(x))
    # Fitting on rescaled data gives the same model.
    assert np.array_equal(make_hasher(method, 32).fit(x * scales).encode(x), hasher.encode(x))


def test_encode_rejects_wrong_dimension_and_non_float():
    x, _ = clustered(100)
    hasher = LshHasher(32).fit(x)
    with pytest.raises(ValueError, match="dimension 32 .* dimension 64"):
        hasher.encode(x[:, :32])
    with pytest.raises(ValueError, match="floating point"):
        hasher.encode(np.ones((2, 64), dtype=np.int64))


def test_lsh_bits_are_balanced_after_centring():
    # Embeddings sharing a big common component (like CLIP's) still give balanced bits.
    x, _ = clustered(2000, dim=64, noise=1.0)
    x = x + 20.0
    codes = LshHasher(64, seed=0).fit(x).encode(x)
    bit_means = np.unpackbits(codes, axis=1).mean(axis=0)
    assert 0.3 < bit_means.mean() < 0.7
    assert (np.abs(bit_means - 0.5) < 0.35).all()


def test_lsh_hamming_distance_tracks_angle():
    # SimHash: P[bit differs] = angle / pi for uncentred data; check the relation holds roughly.
    rng = np.random.default_rng(0)
    dim = 32
    base = rng.standard_normal(dim)
    base /= np.linalg.norm(base)
    other = rng.standard_normal(dim)
    other -= other @ base * base
    other /= np.linalg.norm(other)
    angles = np.linspace(0.0, np.pi, 7)
    points = np.cos(angles)[:, None] * base + np.sin(angles)[:, None] * other
    hasher = LshHasher(2048, seed=0)
    hasher.fit(np.concatenate([points, -points]))  # symmetric sample -> mean exactly 0
    codes = hasher.encode(points)
    fraction = hamming_distances(codes[:1], codes)[0] / 2048
    assert np.allclose(fraction, angles / np.pi, atol=0.05)


def test_itq_rejects_more_bits_than_dim_or_samples():
    x, _ = clustered(100, dim=32)
    with pytest.raises(ValueError, match="lsh"):
        ItqHasher(64).fit(x)
    with pytest.raises(ValueError, match="at least n_bits training samples"):
        ItqHasher(32).fit(x[:20])


def test_itq_projection_is_orthonormal_rotation_of_pca():
    x, _ = clustered(500, dim=64)
    hasher = ItqHasher(32, iterations=20).fit(x)
    w = hasher.projection.astype(np.float64)
    assert np.allclose(w.T @ w, np.eye(32), atol=1e-5)


def test_itq_iterations_lower_quantisation_loss():
    x, _ = clustered(1000, dim=64)
    hasher = ItqHasher(32, iterations=30).fit(x)
    losses = np.array(hasher.quantization_losses)
    assert len(losses) == 31
    assert np.all(np.diff(losses) <= 1e-5 * losses[0])  # each Procrustes step is optimal for fixed B
    assert losses[-1] < losses[0]


def test_itq_beats_lsh_on_label_neighbours_of_clustered_data():
    x, labels = clustered(3000, dim=64, n_clusters=10, noise=1.2, seed=5)
    queries, gallery = slice(0, 300), slice(300, None)

    def neighbour_precision(method):
        hasher = make_hasher(method, 32, seed=0).fit(x[gallery])
        _, rows = hamming_topk(hasher.encode(x[queries]), hasher.encode(x[gallery]), 50)
        return (labels[gallery][rows] == labels[queries][:, None]).mean()

    itq, lsh = neighbour_precision("itq"), neighbour_precision("lsh")
    assert itq > lsh + 0.1
    assert itq > 0.9


def test_base_class_is_abstract():
    with pytest.raises(TypeError):
        Hasher(64)
