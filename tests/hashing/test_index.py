import numpy as np
import pytest

from hashing.index import BinaryIndexShard, IndexLoadError, hamming_topk, merge_topk


def random_codes(n, nbytes, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, nbytes), dtype=np.uint8)


def test_hamming_topk_hand_checked_with_ties():
    g = np.array([[0x00, 0x03], [0x00, 0x00], [0x00, 0x01], [0x00, 0x01], [0xFF, 0xFF]], dtype=np.uint8)
    q = np.array([[0x00, 0x00]], dtype=np.uint8)
    dist, rows = hamming_topk(q, g, 4)
    assert dist.tolist() == [[0, 1, 1, 2]]
    assert rows.tolist() == [[1, 2, 3, 0]]  # the tie at distance 1 keeps row order
    assert dist.dtype == np.int32 and rows.dtype == np.int64


@pytest.mark.parametrize("nbytes", [2, 8, 32])
def test_faiss_search_equals_numpy_reference(nbytes):
    gallery = random_codes(3000, nbytes, seed=nbytes)
    gallery[100:400] = gallery[0]  # many exact ties
    queries = random_codes(25, nbytes, seed=100 + nbytes)
    queries[0] = gallery[0]
    shard = BinaryIndexShard.build(gallery)
    assert len(shard) == 3000 and shard.n_bits == nbytes * 8
    for k in (1, 10, 500):
        dist, rows = shard.search(queries, k)
        ref_dist, ref_rows = hamming_topk(queries, gallery, k)
        assert dist.dtype == np.int32 and rows.dtype == np.int64
        assert np.array_equal(dist, ref_dist)
        # faiss 1.15 breaks ties by smaller id, so the rows match too.
        assert np.array_equal(rows, ref_rows)


def test_search_never_returns_padding_when_k_exceeds_size():
    gallery = random_codes(5, 4, seed=0)
    shard = BinaryIndexShard.build(gallery)
    dist, rows = shard.search(random_codes(3, 4, seed=1), 10)
    assert dist.shape == rows.shape == (3, 5)
    assert (rows >= 0).all() and sorted(rows[0].tolist()) == [0, 1, 2, 3, 4]
    empty = BinaryIndexShard.build(np.empty((0, 4), dtype=np.uint8))
    assert len(empty) == 0
    dist, rows = empty.search(random_codes(2, 4, seed=1), 10)
    assert dist.shape == rows.shape == (2, 0)


def test_search_rejects_wrong_code_length_and_k():
    shard = BinaryIndexShard.build(random_codes(10, 4, seed=0))
    with pytest.raises(ValueError, match="64 bits .* 32-bit"):
        shard.search(random_codes(1, 8, seed=0), 3)
    with pytest.raises(ValueError, match="positive"):
        shard.search(random_codes(1, 4, seed=0), 0)


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(tmp_path, mmap):
    gallery = random_codes(1000, 32, seed=3)
    queries = random_codes(8, 32, seed=4)
    shard = BinaryIndexShard.build(gallery)
    path = shard.save(tmp_path / "shard-00000.faissbin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00000.faissbin"]
    loaded = BinaryIndexShard.load(path, mmap=mmap)
    assert len(loaded) == 1000 and loaded.n_bits == 256
    for got, want in zip(loaded.search(queries, 7), shard.search(queries, 7), strict=True):
        assert np.array_equal(got, want)


def test_load_missing_and_corrupt(tmp_path):
    with pytest.raises(IndexLoadError, match="does not exist"):
        BinaryIndexShard.load(tmp_path / "missing.faissbin")
    garbage = tmp_path / "garbage.faissbin"
    garbage.write_bytes(b"garbage" * 20)
    with pytest.raises(IndexLoadError, match="corrupt"):
        BinaryIndexShard.load(garbage)
    good = BinaryIndexShard.build(random_codes(100, 32, seed=0)).save(tmp_path / "good.faissbin")
    truncated = tmp_path / "truncated.faissbin"
    truncated.write_bytes(good.read_bytes()[:1000])
    for mmap in (False, True):
        with pytest.raises(IndexLoadError, match="corrupt"):
            BinaryIndexShard.load(truncated, mmap=mmap)


def test_merge_topk_orders_by_distance_shard_row():
    shard0 = (np.array([[1, 3, 5]], dtype=np.int32), np.array([[7, 2, 9]], dtype=np.int64))
    shard1 = (np.array([[1, 2]], dtype=np.int32), np.array([[0, 4]], dtype=np.int64))
    shard2 = (np.array([[0, 1]], dtype=np.int32), np.array([[5, 1]], dtype=np.int64))
    dist, shard_no, rows = merge_topk([shard0, shard1, shard2], 5)
    assert dist.tolist() == [[0, 1, 1, 1, 2]]
    assert shard_no.tolist() == [[2, 0, 1, 2, 1]]
    assert rows.tolist() == [[5, 7, 0, 1, 4]]
    dist, _, _ = merge_topk([shard0, shard1, shard2], 100)
    assert dist.shape == (1, 7)


def test_merge_of_sharded_search_equals_search_of_concatenation():
    gallery = random_codes(2000, 8, seed=5)
    gallery[500:900] = gallery[10]
    queries = random_codes(12, 8, seed=6)
    queries[0] = gallery[10]
    bounds = [0, 300, 1100, 2000]
    shards = [BinaryIndexShard.build(gallery[a:b]) for a, b in zip(bounds, bounds[1:])]
    dist, shard_no, rows = merge_topk([shard.search(queries, 50) for shard in shards], 50)
    global_rows = np.asarray(bounds)[shard_no] + rows
    ref_dist, ref_rows = hamming_topk(queries, gallery, 50)
    assert np.array_equal(dist, ref_dist)
    assert np.array_equal(global_rows, ref_rows)


def test_merge_topk_validates_input():
    with pytest.raises(ValueError, match="at least one shard"):
        merge_topk([], 3)
    a = (np.zeros((1, 2), np.int32), np.zeros((1, 2), np.int64))
    b = (np.zeros((2, 2), np.int32), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="number of queries"):
        merge_topk([a, b], 3)


def clustered_codes(n, nbytes, seed, clusters=20, flips=8):
    """Codes around a few centres with some bits flipped: neighbours exist, as in an archive."""
    rng = np.random.default_rng(seed)
    bits = np.unpackbits(rng.integers(0, 256, size=(clusters, nbytes), dtype=np.uint8), axis=1)
    rows = bits[rng.integers(0, clusters, n)]
    rows ^= (rng.random(rows.shape) < flips / rows.shape[1]).astype(np.uint8)
    return np.packbits(rows, axis=1)


def test_index_config_is_flat_up_to_the_threshold_and_ivf_above():
    from hashing.index import BinaryIndexConfig

    config = BinaryIndexConfig(exact_max_rows=1000)
    assert config.kind_for(1000) == "flat" and config.kind_for(1001) == "ivf"
    assert BinaryIndexConfig(kind="flat", exact_max_rows=0).kind_for(10**9) == "flat"
    assert BinaryIndexConfig(kind="ivf").kind_for(1) == "ivf"
    assert config.nlist_for(1_000_000) == 1024 and config.nlist_for(10) == 1
    with pytest.raises(ValueError):
        BinaryIndexConfig(kind="hnsw")


def test_ivf_shard_finds_near_neighbours_pads_what_it_misses_and_round_trips(tmp_path):
    from hashing.index import MISSING_DISTANCE, BinaryIndexConfig

    gallery = clustered_codes(4000, 8, seed=1)
    queries = gallery[:20]
    config = BinaryIndexConfig(ivf_rows_per_list=250, ivf_nprobe=4)
    shard = BinaryIndexShard.build(gallery, "ivf", config)
    assert shard.kind == "ivf" and not shard.exact and len(shard) == 4000
    dist, rows = shard.search(queries, 10)
    exact_dist, _ = hamming_topk(queries, gallery, 10)
    # Recall@10 with ties as right answers: the clustered codes put true neighbours in the probed lists.
    assert np.mean(dist <= exact_dist[:, -1:]) >= 0.9
    assert (rows[:, 0] == np.arange(20)).all() and (dist[:, 0] == 0).all()  # each indexed code finds itself
    many_dist, many_rows = shard.search(queries[:1], 4000)  # more than the probed lists hold
    missing = many_rows[0] < 0
    assert missing.any() and (many_dist[0][missing] == MISSING_DISTANCE).all()
    assert missing[np.argmax(missing):].all(), "padding comes after every real result"
    loaded = BinaryIndexShard.load(shard.save(tmp_path / "ivf.faissbin"))
    assert loaded.kind == "ivf"
    for got, want in zip(loaded.search(queries, 10), (dist, rows), strict=True):
        assert np.array_equal(got, want)  # nprobe is stored in the file
    again = BinaryIndexShard.build(gallery, "ivf", config)
    assert all(np.array_equal(a, b) for a, b in zip(again.search(queries, 10), (dist, rows)))


def test_too_few_codes_for_lists_make_a_flat_shard():
    from hashing.index import BinaryIndexConfig

    shard = BinaryIndexShard.build(random_codes(50, 8, seed=2), "ivf", BinaryIndexConfig(ivf_rows_per_list=100))
    assert shard.exact and shard.kind == "flat"
