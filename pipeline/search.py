"""Search a published index: a text or a video becomes a code, and its Hamming top-k is merged across shards.

Results are grouped per video (its closest clip represents it), so a long video with many matching clips
does not fill the whole result list. Query encoding uses the model named in the index manifest, i.e. the
same encoder weights and clip sampling that produced the archive's codes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hashing.bits import codes_from_arrow
from hashing.index import BinaryIndexShard, IndexLoadError, merge_topk
from pipeline.errors import CorruptStoreError
from pipeline.models import StoredModel, load_model
from pipeline.publish import read_current_manifest, recovery_advice
from pipeline.decode import DecodeError
from pipeline.images import decode_media_clips
from pipeline.store import StoreLayout, StorePath, file_sha256, read_parquet, read_range
from pipeline.thumbnails import NO_THUMBNAIL


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def check_file(path: StorePath, expected_sha256: str | None, index: str) -> None:
    """A published file must exist and match the checksum its manifest recorded."""
    if not path.is_file():
        raise CorruptStoreError(f"{path} is missing from the published version; {recovery_advice(index)}")
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise CorruptStoreError(f"{path} is corrupt (checksum mismatch); {recovery_advice(index)}")


@dataclass
class SearchHit:
    rank: int
    distance: int
    video_id: str
    collection: str
    uri: str
    clip_idx: int
    t_start: float
    t_end: float
    caption: str | None

    def as_dict(self) -> dict:
        return asdict(self)


class PublishedIndex:
    """One resolved version of an index: its faiss shards and id tables."""

    def __init__(self, name: str, version: int, version_dir: StorePath, manifest: dict):
        self.name = name
        self.version = version
        self.version_dir = version_dir
        self.manifest = manifest
        self.shards, self.ids = [], []
        for shard in manifest["shards"]:
            # Checksums first: a damaged but parseable shard would otherwise answer wrongly without a word. The
            # cost is one sha256 pass over the version (docs/architecture.md, "Reading a published version").
            for file_name in (shard["index_file"], shard["ids_file"]):
                check_file(version_dir / file_name, shard["sha256"].get(file_name), name)
            try:
                self.shards.append(BinaryIndexShard.load(version_dir / shard["index_file"]))
                # One chunk per column: a take() across the Parquet row groups' chunks costs ~0.4 ms per
                # column and query at 1M rows, more than the faiss scan itself (benchmarks/README.md).
                self.ids.append(read_parquet(version_dir / shard["ids_file"]).combine_chunks())
            except (IndexLoadError, OSError, pa.ArrowException) as error:
                raise CorruptStoreError(f"{one_line(error)}; {recovery_advice(name)}") from None
        if sum(len(shard) for shard in self.shards) != sum(table.num_rows for table in self.ids):
            raise CorruptStoreError(f"{version_dir}: index shards and id tables disagree; {recovery_advice(name)}")
        # Each row's video as a number into one dictionary of the version's video_ids: finding the best clip
        # per video is then numpy work on the candidates, not a string lookup per candidate.
        encoded = pc.dictionary_encode(pa.chunked_array([table["video_id"].combine_chunks() for table in self.ids],
                                                        pa.string()))
        self.video_numbers = [chunk.indices.to_numpy(zero_copy_only=False) for chunk in encoded.chunks]
        self.video_dictionary = encoded.chunks[0].dictionary if encoded.chunks else pa.array([], pa.string())

    @classmethod
    def open(cls, layout: StoreLayout, name: str) -> PublishedIndex:
        version, version_dir, manifest = read_current_manifest(layout, name)
        return cls(name, version, version_dir, manifest)

    @property
    def size(self) -> int:
        return sum(len(shard) for shard in self.shards)

    @property
    def exact(self) -> bool:
        """True when every shard is a flat index: the results are the true Hamming top-k."""
        return all(shard.exact for shard in self.shards)

    def codes_of_video(self, video_id: str) -> np.ndarray:
        """Packed codes of every indexed clip of a video (empty when the id is unknown)."""
        found = []
        for ids in self.ids:
            mask = np.asarray(ids["video_id"].to_numpy(zero_copy_only=False) == video_id)
            if mask.any():
                found.append(codes_from_arrow(ids["code"].filter(pa.array(mask))))
        nbytes = self.manifest["code_bits"] // 8
        return np.concatenate(found) if found else np.zeros((0, nbytes), np.uint8)

    def thumbnail(self, video_id: str, clip_idx: int) -> bytes | None:
        """The JPEG thumbnail of one clip of this version, None when it has none (pipeline/thumbnails.py)."""
        pack = self.manifest.get("thumbnails")
        if not pack:
            return None
        for ids in self.ids:
            if "thumb_offset" not in ids.column_names:
                continue
            mask = pc.and_(pc.equal(ids["video_id"], video_id), pc.equal(ids["clip_idx"], clip_idx))
            found = ids.filter(mask)
            if found.num_rows and found["thumb_offset"][0].as_py() != NO_THUMBNAIL:
                return read_range(self.version_dir / pack["file"], found["thumb_offset"][0].as_py(),
                                  found["thumb_length"][0].as_py())
        return None

    def search(self, query_codes: np.ndarray, k: int, prefer_video: str | None = None) -> list[SearchHit]:
        """Top-k videos for one or more query codes (several codes = one query made of several clips).

        Ties are broken by index position, except that ``prefer_video`` (the query's own video in a
        search-by-example) goes first among the videos at its distance.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        query_codes = np.atleast_2d(np.asarray(query_codes, dtype=np.uint8))
        total = self.size
        if total == 0 or len(query_codes) == 0:
            return []
        prefer = pc.index(self.video_dictionary, prefer_video).as_py() if prefer_video is not None else -1
        fetch = min(total, max(4 * k, 16))
        while True:
            best, bound = self._best_clip_per_video(query_codes, fetch)
            ranked = sorted(best, key=lambda place: (place[0], place[3] != prefer, place))[:k]
            # A video none of whose clips made any query's top-`fetch` is at least `bound` away, so the
            # ranking is exact once the k-th video found is no farther (several query codes can each be
            # filled by one video's clips while another query reaches far-away videos).
            if fetch >= total or (len(ranked) >= k and ranked[-1][0] <= bound):
                break
            fetch = min(total, fetch * 4)
        return self._hits(ranked) if ranked else []

    def _best_clip_per_video(self, query_codes: np.ndarray, fetch: int) -> tuple[list[tuple[int, int, int, int]], int]:
        """The best (distance, shard_no, row, video_number) of each video among each query's top-`fetch` clips,
        and the smallest distance any clip outside those top lists can have (the nearest query's `fetch`-th)."""
        distances, shard_nos, rows = self.search_clips(query_codes, fetch)
        bound = int(distances[:, -1].min())
        found = rows.ravel() >= 0  # an approximate shard pads what it did not find with row -1
        distances, shard_nos, rows = distances.ravel()[found], shard_nos.ravel()[found], rows.ravel()[found]
        order = np.lexsort((rows, shard_nos, distances))  # several query codes: one list in (distance, place) order
        distances, shard_nos, rows = distances[order], shard_nos[order], rows[order]
        videos = np.empty(len(rows), np.int64)
        for shard_no in np.unique(shard_nos):
            in_shard = shard_nos == shard_no
            videos[in_shard] = self.video_numbers[shard_no][rows[in_shard]]
        _, first = np.unique(videos, return_index=True)  # a video's first place in that order is its best clip
        first.sort()
        return list(zip(distances[first].tolist(), shard_nos[first].tolist(), rows[first].tolist(),
                        videos[first].tolist())), bound

    def search_clips(self, query_codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Clip-level top-k over every shard: ``(distance, shard_no, row)`` arrays [Q, k'], merged by
        ``hashing.index.merge_topk``. Several shards are searched at once: faiss releases the GIL, and one
        query's scan of one shard runs on one core."""
        if len(self.shards) == 1 and self.shards[0].exact:  # already in (distance, row) order: nothing to merge
            distances, rows = self.shards[0].search(query_codes, k)
            return distances, np.zeros(rows.shape, np.int32), rows
        if len(self.shards) == 1:
            per_shard = [self.shards[0].search(query_codes, k)]
        else:
            with ThreadPoolExecutor(min(len(self.shards), os.cpu_count() or 1)) as pool:
                per_shard = list(pool.map(lambda shard: shard.search(query_codes, k), self.shards))
        return merge_topk(per_shard, k)

    def _columns(self, names: tuple[str, ...], places: list[tuple[int, ...]]) -> dict[str, list]:
        """Values of id-table columns at (distance, shard_no, row, …) places, in order: one take per shard (a column a
        version's tables lack reads as None)."""
        columns: dict[str, list] = {name: [None] * len(places) for name in names}
        by_shard: dict[int, list[int]] = {}
        for position, place in enumerate(places):
            by_shard.setdefault(place[1], []).append(position)
        for shard_no, positions in by_shard.items():
            table = self.ids[shard_no]
            rows = pa.array([places[p][2] for p in positions], pa.int64())
            for name in names:
                if name in table.column_names:
                    # combine_chunks() left one chunk per column: Array.take skips the chunked-array dispatch
                    for position, value in zip(positions, table[name].chunk(0).take(rows).to_pylist()):
                        columns[name][position] = value
        return columns

    def _hits(self, ranked: list[tuple[int, int, int, int]]) -> list[SearchHit]:
        columns = self._columns(("video_id", "collection", "uri", "clip_idx", "t_start", "t_end", "caption"), ranked)
        return [SearchHit(rank=i + 1, distance=distance, video_id=columns["video_id"][i],
                          collection=columns["collection"][i] or "", uri=columns["uri"][i] or "",
                          clip_idx=int(columns["clip_idx"][i]), t_start=float(columns["t_start"][i]),
                          t_end=float(columns["t_end"][i]), caption=columns["caption"][i])
                for i, (distance, *_) in enumerate(ranked)]


def search_response(index: PublishedIndex, query: str, k: int, hits: list[SearchHit], warnings: list[str]) -> dict:
    """The JSON of a search, the same from ``reelhash search --json`` and from the service's API."""
    return {"index": index.name, "version": index.version, "model_id": index.manifest["model_id"], "query": query,
            "k": k, "exact": index.exact, "warnings": list(warnings), "results": [hit.as_dict() for hit in hits]}


# A search by example uses at most this many clips of the query video (README, "search --like").
MAX_LIKE_CLIPS = 64
LIKE_BATCH = 16


class QueryHasher:
    """Turns text or a video file into codes with the index's model (encoder loaded on first use)."""

    def __init__(self, model: StoredModel):
        self.model = model
        self._encoder = None

    @classmethod
    def for_index(cls, layout: StoreLayout, index: PublishedIndex) -> QueryHasher:
        # Exactly the version the index pinned (never an alias), and only if its files still match the digest.
        return cls(load_model(layout, index.manifest["model_id"],
                              expected_digest=index.manifest.get("model", {}).get("digest")))

    @property
    def encoder(self):
        if self._encoder is None:
            from hashing.encoders import build_media_encoder

            self._encoder = build_media_encoder(self.model.encoder_config)
        return self._encoder

    def text_warnings(self, text: str) -> list[str]:
        """What the model's encoder says about a text query (e.g. a DSMHN query with no known word)."""
        return self.encoder.query_warnings(text)

    def text_codes(self, texts: list[str]) -> np.ndarray:
        return self.model.hasher.encode(self.encoder.encode_text(texts), modality="text")

    def video_codes(self, path: str) -> np.ndarray:
        return self.video_query(path)[0]

    def video_query(self, path: str, max_clips: int = MAX_LIKE_CLIPS) -> tuple[np.ndarray, list[str]]:
        """Codes of the first ``max_clips`` clips of a video or image file, and warnings (e.g. it was capped).

        Clips are decoded as a stream and encoded ``LIKE_BATCH`` at a time, so memory stays bounded however
        long the query video is.
        """
        spec = self.encoder.frame_spec
        codes, batch, warnings = [], [], []
        for number, (_, frames) in enumerate(decode_media_clips(path, self.model.sampling, spec.size, spec.resize)):
            if number == max_clips:
                warnings.append(f"the query video has more than {max_clips} clips; only its first {max_clips} "
                                f"({self.model.sampling.clip_seconds:g} s each) were used")
                break
            batch.append(frames)
            if len(batch) == LIKE_BATCH:
                codes.append(self.model.hasher.encode(self.encoder.encode_clips(np.stack(batch)), modality="video"))
                batch = []
        if batch:
            codes.append(self.model.hasher.encode(self.encoder.encode_clips(np.stack(batch)), modality="video"))
        if not codes:
            raise DecodeError(f"no clip could be sampled from {path}")
        return np.concatenate(codes), warnings
