import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hashing.bits import (
    check_bits,
    codes_from_arrow,
    codes_to_arrow,
    hamming_distances,
    pack_bits,
    unpack_bits,
)


@pytest.mark.parametrize("n_bits", [16, 24, 64, 256, 2048])
def test_check_bits_accepts_supported_lengths(n_bits):
    check_bits(n_bits)


@pytest.mark.parametrize("n_bits", [0, 8, 15, 17, 100, 2056, 4096, -16, 64.0, True])
def test_check_bits_rejects_with_explanation(n_bits):
    with pytest.raises(ValueError, match="multiple of 8|integer"):
        check_bits(n_bits)


def test_pack_known_pattern_msb_first():
    bits = np.zeros((2, 16), dtype=bool)
    bits[0, 0] = True  # first bit -> most significant bit of byte 0
    bits[0, 15] = True  # last bit -> least significant bit of byte 1
    bits[1, :8] = True
    packed = pack_bits(bits)
    assert packed.dtype == np.uint8
    assert packed.tolist() == [[0b1000_0000, 0b0000_0001], [0xFF, 0x00]]
    assert np.array_equal(packed, np.packbits(bits, axis=1))


def test_pack_accepts_zero_one_ints_and_round_trips():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(5, 40))
    packed = pack_bits(bits)
    assert packed.shape == (5, 5)
    assert np.array_equal(unpack_bits(packed, 40), bits.astype(bool))
    assert unpack_bits(packed, 40).dtype == np.bool_


def test_pack_rejects_non_binary_values_and_bad_lengths():
    with pytest.raises(ValueError, match="0 and 1"):
        pack_bits(np.full((1, 16), 2))
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_bits(np.zeros((1, 12), dtype=bool))
    with pytest.raises(ValueError, match="n_bits"):
        unpack_bits(np.zeros((1, 2), dtype=np.uint8), 24)


def test_hamming_distances_of_known_codes():
    q = np.array([[0x00, 0x00], [0xFF, 0xFF]], dtype=np.uint8)
    g = np.array([[0x00, 0x00], [0x01, 0x80], [0xFF, 0xFF], [0x0F, 0x00]], dtype=np.uint8)
    d = hamming_distances(q, g)
    assert d.dtype == np.int32
    assert d.tolist() == [[0, 2, 16, 4], [16, 14, 0, 12]]


@pytest.mark.parametrize("nbytes", [2, 3, 8, 32, 33])
def test_hamming_distances_match_unpacked_bit_count(nbytes):
    rng = np.random.default_rng(nbytes)
    q = rng.integers(0, 256, size=(7, nbytes), dtype=np.uint8)
    g = rng.integers(0, 256, size=(11, nbytes), dtype=np.uint8)
    expected = (np.unpackbits(q, axis=1)[:, None, :] != np.unpackbits(g, axis=1)[None, :, :]).sum(axis=2)
    assert np.array_equal(hamming_distances(q, g), expected)


def test_hamming_distances_chunking_does_not_change_result(monkeypatch):
    import hashing.bits as bits_module

    rng = np.random.default_rng(1)
    q = rng.integers(0, 256, size=(37, 32), dtype=np.uint8)
    g = rng.integers(0, 256, size=(50, 32), dtype=np.uint8)
    full = hamming_distances(q, g)
    monkeypatch.setattr(bits_module, "_XOR_CHUNK_BYTES", 1)  # one query per chunk
    assert np.array_equal(hamming_distances(q, g), full)


def test_hamming_distances_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same code length"):
        hamming_distances(np.zeros((1, 2), np.uint8), np.zeros((1, 4), np.uint8))


def test_arrow_round_trip_is_fixed_size_binary_and_zero_copy(tmp_path):
    rng = np.random.default_rng(2)
    packed = rng.integers(0, 256, size=(6, 32), dtype=np.uint8)
    arr = codes_to_arrow(packed)
    assert arr.type == pa.binary(32)
    assert arr.buffers()[1].address == packed.ctypes.data  # no copy
    assert arr[1].as_py() == packed[1].tobytes()
    assert np.array_equal(codes_from_arrow(arr), packed)
    # Slices keep their offset; chunked columns from Parquet concatenate.
    assert np.array_equal(codes_from_arrow(arr.slice(2, 3)), packed[2:5])
    table = pa.table({"code": arr})
    pq.write_table(table, tmp_path / "codes.parquet", row_group_size=4)
    column = pq.read_table(tmp_path / "codes.parquet").column("code")
    assert column.type == pa.binary(32)
    assert np.array_equal(codes_from_arrow(column), packed)
    assert np.array_equal(codes_from_arrow(pa.chunked_array([arr.slice(0, 2), arr.slice(2)])), packed)


def test_codes_from_arrow_rejects_wrong_type_and_nulls():
    with pytest.raises(TypeError, match="fixed_size_binary"):
        codes_from_arrow(pa.array([[1, 2]], type=pa.list_(pa.uint8())))
    with pytest.raises(ValueError, match="null"):
        codes_from_arrow(pa.array([b"ab", None], type=pa.binary(2)))
    empty = codes_from_arrow(pa.array([], type=pa.binary(4)))
    assert empty.shape == (0, 4) and empty.dtype == np.uint8
