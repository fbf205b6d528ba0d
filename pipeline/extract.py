"""Extraction: catalog rows → decode + sample (decoder actors) → encoder actors → feature parts (a writer actor).

Decoding runs in a few decoder actors (streaming generators) straight from the file path or object URI and emits
only the sampled, already reduced frames, in batches of ``encode_batch_size`` clips. Each batch goes, by
reference, to the least busy actor of an ``EncoderPool`` (pipeline/encoder_pool.py), which a run starts before it
reads its catalog so that the models load meanwhile; ``num_gpus`` is requested only when the cluster has a GPU.
The encoded batch goes, again by reference, to the writer actor, which writes the embeddings as Parquet parts into
the store; the driver receives only small completion records. Actors rather than a Ray Data dataset or plain
tasks: Ray Data's scheduling loop spins on a driver core whenever the encoders hold decoding back, and Ray ends
idle task workers within a second, so every pause restarted a worker (2 CPU-s of imports each)
(docs/architecture.md, "Why extraction decodes in decoder actors").

Work is committed in *units* of at most ``ExtractConfig.unit_videos`` videos: each unit is its own shard run,
committed (its manifest created) by the driver as soon as every one of its videos is written or failed. A run
killed at any point and started again finds the committed units' videos in the feature cache and redoes only
the units that were in flight (docs/architecture.md, "Resuming a killed run"). A video that fails to decode
becomes a failure record (it never fails the dataset) and is reported back for the catalog.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pydantic
import ray

from pydantic import BaseModel

from pipeline.decode import DecodeError, Resize
from pipeline.failpoints import crash_point
from pipeline.features import clip_feature_schema, embedding_array
from pipeline.encoder_pool import EncoderPool
from pipeline.ray_runtime import check_schedulable, cluster_gpu_count
from pipeline.images import decode_media_clips
from pipeline.sampling import SamplingConfig
from pipeline.shards import commit_run, content_key, new_part_name
from pipeline.store import StorePath, as_path, atomic_write_parquet
from pipeline.thumbnails import clip_thumbnail

logger = logging.getLogger(__name__)


class ExtractConfig(pydantic.BaseModel):
    """Resources of the extraction stages."""

    encode_batch_size: int = pydantic.Field(default=16, ge=1, description="Clips per encoder call.")
    max_encoder_actors: int | None = pydantic.Field(
        default=None, ge=1,
        description="Upper bound of the encoder actor pool; default from the cluster (one per GPU, else one per "
                    "2 × encoder_cpus logical CPUs).")
    decode_cpus: float = pydantic.Field(
        default=1.0, gt=0,
        description="Logical CPUs per decoder actor; the actors are as many as the CPUs the encoders and the writer "
                    "leave allow (at least one).")
    encoder_cpus: float | None = pydantic.Field(
        default=None, gt=0,
        description="Logical CPUs per encoder actor (Ray sets its torch threads to this); default 2 on a cluster "
                    "without GPUs — on a 2-core machine (4 logical CPUs) one actor with a thread per core, which "
                    "runs a forward pass per thread side by side (its CPU streams), 1.8 GB smaller than two "
                    "one-thread actors (docs/encoders.md, 'Threads') — and 1 per GPU actor, whose CPU only feeds the "
                    "GPU.")
    rows_per_shard: int = pydantic.Field(
        default=4096, ge=1,
        description="Clip rows per feature part at most; a unit's last part is written as soon as the unit is "
                    "complete.")
    unit_videos: int = pydantic.Field(
        default=200, ge=1, le=10_000,
        description="Videos per committed unit: a killed run redoes at most the units in flight.")
    prewarmed_pool: str | None = pydantic.Field(
        default=None,
        description="Set by `reelhash index` when it started the run's encoder actors before the flow (with its "
                    "own Ray and Prefect API): the name the run takes them over by.")


@dataclass
class ExtractResult:
    run_dirs: list[StorePath]
    videos_requested: int
    videos_encoded: int
    clips: int
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    first_batch_seconds: float | None = None  # from the start of extraction to the first batch encoded and written


def decode_video_row(row: dict, sampling: dict, frame_size: int, resize: Resize = "crop") -> Iterator[dict]:
    """One catalog row → one row per clip with its frames, then a failure row with an ``error`` if decoding fails.

    A generator: clips are passed on as they are decoded, so a long video never holds all its clips in memory at
    once. Clips yielded before a failure are harmless: a failed video is left out of the
    run's manifest, and readers take only the manifest's videos.
    """
    config = SamplingConfig.model_validate(sampling)
    frames_shape = (config.frames_per_clip, frame_size, frame_size, 3)
    base = {"video_id": row["video_id"], "fingerprint": row["fingerprint"]}
    try:
        count = 0
        for plan, frames in decode_media_clips(row["path"], config, frame_size, resize):
            yield {**base, "clip_idx": plan.clip_idx, "t_start": float(plan.t_start), "t_end": float(plan.t_end),
                   "frames": frames, "thumbnail": clip_thumbnail(frames), "error": ""}
            count += 1
        if count:
            return
        raise DecodeError("no clip could be sampled from the video")
    except DecodeError as error:
        message = str(error)
    except Exception as error:  # a failure of one file must never fail the whole dataset
        message = f"decode failed: {type(error).__name__}: {error}"
    yield {**base, "clip_idx": -1, "t_start": 0.0, "t_end": 0.0, "frames": np.zeros(frames_shape, np.uint8),
           "thumbnail": b"", "error": message.splitlines()[0][:500]}


WRITER_CPUS = 0.25  # the feature writer mostly waits for batches; a whole CPU would starve decoding on 2 cores

END_OF_VIDEO = -2  # clip_idx of the row that closes a decoded video and carries its clip count


def decode_unit_row(row: dict, sampling: dict, frame_size: int, resize: Resize = "crop") -> Iterator[dict]:
    """``decode_video_row`` tagged with the row's unit, closed by an end-of-video row holding the clip count, so
    the driver can tell when every clip of a video has been written."""
    count = 0
    for clip in decode_video_row(row, sampling, frame_size, resize):
        clip["unit"], clip["clips"] = row["unit"], 0
        count += clip["error"] == ""
        yield clip
        if clip["error"]:
            return
    yield {**clip, "clip_idx": END_OF_VIDEO, "frames": np.zeros_like(clip["frames"]), "thumbnail": b"", "clips": count}


def rows_to_batch(rows: list[dict]) -> dict[str, np.ndarray]:
    """Clip rows (as ``decode_unit_row`` yields them) as one batch of columns; text and bytes as object arrays."""
    batch = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        if key == "frames":
            batch[key] = np.stack(values)
        elif isinstance(values[0], (str, bytes)):
            batch[key] = np.array(values, dtype=object)
        else:
            batch[key] = np.array(values)
    return batch


def decode_batches(items: list[dict], sampling: dict, frame_size: int, resize: Resize, batch_rows: int
                   ) -> Iterator[dict[str, np.ndarray]]:
    """The clips of ``items`` (catalog rows with their unit), decoded one video after another and yielded in
    batches of ``batch_rows`` rows — the last one shorter — so that the encoder runs full batches."""
    rows: list[dict] = []
    for item in items:
        for row in decode_unit_row(item, sampling, frame_size, resize):
            rows.append(row)
            if len(rows) >= batch_rows:
                yield rows_to_batch(rows)
                rows = []
    if rows:
        yield rows_to_batch(rows)


# Batches a decode call may have ready before the driver takes them: enough to keep the encoders fed, few enough
# that a long video's frames wait in its decoder rather than in the object store.
DECODED_BATCHES_AHEAD = 2

# The encoder is what extraction waits for; decoding needs a fraction of a core (docs/decoding.md), so where they
# share cores the decoders take what the encoder threads leave.
DECODER_NICENESS = 10

# Calls in flight per decoder actor: the one it runs and one queued, so it starts the next group of videos as soon
# as the current one is decoded.
CALLS_PER_DECODER = 2


class DecoderActor:
    """Decodes groups of videos into batches of clips (``decode_batches``), one group per call; an actor so that its
    process — and the decoding libraries it imported — lives for the whole extraction."""

    def __init__(self, niceness: int = 0):
        if niceness:
            os.nice(niceness)  # of this process only: decoding yields to the encoder threads on a shared core

    def decode(self, items: list[dict], sampling: dict, frame_size: int, resize: Resize, batch_rows: int
               ) -> Iterator[dict[str, np.ndarray]]:
        yield from decode_batches(items, sampling, frame_size, resize, batch_rows)


def clip_key_columns(batch: dict, mask: np.ndarray) -> dict[str, pa.Array]:
    """The columns that identify a clip (video, fingerprint, index, time range) of the rows of ``batch`` in ``mask``."""
    return {
        "video_id": pa.array(batch["video_id"][mask].astype(str)),
        "fingerprint": pa.array(batch["fingerprint"][mask].astype(str)),
        "clip_idx": pa.array(batch["clip_idx"][mask].astype(np.int32)),
        "t_start": pa.array(batch["t_start"][mask].astype(np.float64)),
        "t_end": pa.array(batch["t_end"][mask].astype(np.float64)),
    }


class FeaturePartWriter:
    """The one actor that writes feature parts: it buffers each unit's encoded clips and writes them as a Parquet
    part (``run-<unit>/part-….parquet``) when the unit is complete — so a unit commits as soon as its last clip
    is encoded, in one file — or when ``rows_per_part`` clips are buffered for it. Returns one completion record
    per unit and batch (JSON: the part written if any, the clips it holds, ended videos, failures).

    One actor, so that all rows of a unit meet in one place; it moves about 1 KB per clip, far below what the
    encoders produce, and can run on any node.
    """

    def __init__(self, feature_dir: str, embed_dim: int, unit_sizes: dict[str, int], rows_per_part: int):
        self.directory = as_path(feature_dir)
        self.schema = clip_feature_schema(embed_dim, thumbnails=True)
        self.rows_per_part = rows_per_part
        self.arrived = {unit: UnitProgress(unit, {}, size=size) for unit, size in unit_sizes.items()}
        self.buffers: dict[str, list[pa.Table]] = {}
        self.node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"

    def write(self, batch: dict) -> dict:
        """Buffer or write one encoded batch (dict of columns); returns ``{"record": [JSON completion records]}``."""
        records = []
        for unit in sorted(set(batch["unit"].tolist())):
            in_unit = batch["unit"] == unit
            ok = in_unit & (batch["error"] == "") & (batch["clip_idx"] >= 0)
            ended = in_unit & (batch["clip_idx"] == END_OF_VIDEO)
            failed = in_unit & (batch["error"] != "")
            record: dict = {
                "unit": unit, "file": None, "rows": 0, "clips": {}, "node": self.node,
                "ended": {str(v): int(n) for v, n in zip(batch["video_id"][ended], batch["clips"][ended])},
                "failures": [{"video_id": str(v), "fingerprint": str(f), "error": str(e)} for v, f, e in
                             zip(batch["video_id"][failed], batch["fingerprint"][failed], batch["error"][failed])],
            }
            if ok.any():
                self.buffers.setdefault(unit, []).append(pa.table(
                    {**clip_key_columns(batch, ok), "embedding": embedding_array(batch["embedding"][ok]),
                     "thumbnail": pa.array([bytes(t) for t in batch["thumbnail"][ok]], pa.binary())},
                    schema=self.schema))
            progress = self.arrived[unit]
            progress.add({**record, "file": None, "clips": dict(Counter(batch["video_id"][ok].astype(str).tolist()))})
            buffered = sum(table.num_rows for table in self.buffers.get(unit, []))
            if buffered and (progress.complete or buffered >= self.rows_per_part):
                record.update(self._flush(unit))
            records.append(json.dumps(record))
        return {"record": np.array(records, dtype=object)}

    def _flush(self, unit: str) -> dict:
        table = pa.concat_tables(self.buffers.pop(unit))
        name = new_part_name()
        atomic_write_parquet(self.directory / f"run-{unit}" / name, table)
        return {"file": name, "rows": table.num_rows, "clips": dict(Counter(table["video_id"].to_pylist()))}


@dataclass
class UnitProgress:
    """What the driver knows of one unit: its videos, the parts written for it and which videos are complete."""

    key: str
    videos: dict[str, str]  # video_id → fingerprint
    size: int = 0  # number of videos (defaults to len(videos); the writer actor knows only the number)
    files: list[dict] = field(default_factory=list)
    written: Counter = field(default_factory=Counter)
    expected: dict[str, int] = field(default_factory=dict)
    failures: dict[str, dict] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)
    committed: bool = False

    def add(self, record: dict) -> None:
        self.nodes.add(record["node"])
        if record["file"]:
            self.files.append({"file": record["file"], "rows": record["rows"]})
        self.written.update(record["clips"])
        self.expected.update(record["ended"])
        self.failures.update({item["video_id"]: item for item in record["failures"]})

    def finished_videos(self) -> set[str]:
        return set(self.failures) | {video for video, count in self.expected.items() if self.written[video] == count}

    @property
    def complete(self) -> bool:
        return len(self.finished_videos()) >= (self.size or len(self.videos))

    def encoded(self) -> dict[str, str]:
        return {video: self.videos[video] for video in self.videos if video not in self.failures}


def plan_units(rows: list[dict], encoder_config: BaseModel, sampling: SamplingConfig, unit_videos: int) -> list[UnitProgress]:
    """Rows (sorted by video_id) cut into units; a unit's key is the content of its videos, so a rerun of the
    same videos in the same state finds the same committed run."""
    ordered = sorted(rows, key=lambda row: row["video_id"])
    units = []
    for start in range(0, len(ordered), unit_videos):
        chunk = ordered[start:start + unit_videos]
        key = content_key([encoder_config.model_dump_json(), sampling.model_dump_json()]
                          + [f"{r['video_id']}:{r['fingerprint']}" for r in chunk])
        units.append(UnitProgress(key, {r["video_id"]: r["fingerprint"] for r in chunk}))
    return units


def encoder_actor_cpus(extract: ExtractConfig, gpus: float) -> float:
    """``extract.encoder_cpus``, or its default for a cluster with ``gpus`` GPUs: 1 per GPU actor, else 2."""
    if extract.encoder_cpus is not None:
        return extract.encoder_cpus
    return 1.0 if gpus >= 1 else 2.0


def encoder_pool_size(extract: ExtractConfig, resources: dict[str, float] | None = None) -> int:
    """Encoder actors for the cluster Ray is connected to (all its nodes), not for the driver's machine: one per
    GPU (no more than the CPUs hold at their CPUs each: an actor Ray cannot place would never answer); on CPUs one
    per ``2 ×`` its CPUs, leaving the other half to decoding. ``resources``: the cluster's totals (default: asked of
    the Ray instance this process is connected to)."""
    if extract.max_encoder_actors is not None:
        return extract.max_encoder_actors
    resources = ray.cluster_resources() if resources is None else resources
    gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 1)
    per_actor = encoder_actor_cpus(extract, gpus)
    if gpus >= 1:
        return max(1, min(int(gpus), int(cpus // per_actor)))
    return max(1, int(cpus // (2 * per_actor)))


def decode_slots(extract: ExtractConfig, encoder_actors: int, resources: dict[str, float] | None = None) -> int:
    """Decoder actors the cluster can run beside the encoder actors and the writer (at least one); ``resources`` as
    in ``encoder_pool_size``."""
    resources = ray.cluster_resources() if resources is None else resources
    per_actor = encoder_actor_cpus(extract, resources.get("GPU", 0))
    spare = resources.get("CPU", 1) - encoder_actors * per_actor - WRITER_CPUS
    return max(1, int(spare // extract.decode_cpus))


def decode_groups(items: list[dict], tasks_at_once: int, max_videos: int = 64) -> list[list[dict]]:
    """``items`` cut into consecutive groups, one decode call each: about four groups per call that can run at
    once, so that the last ones end together, and at most ``max_videos`` per group, so that the batches of a call
    are never far apart in the order of videos."""
    size = max(1, min(max_videos, -(-len(items) // (4 * max(1, tasks_at_once)))))
    return [items[start:start + size] for start in range(0, len(items), size)]


PREWARMED_POOL_PREFIX = "reelhash-encoder-"


def pool_request(extract: ExtractConfig) -> dict:
    """``EncoderPool.start``'s pool arguments for the cluster Ray is connected to: size, CPUs per actor, batch."""
    return {"size": encoder_pool_size(extract), "encoder_cpus": encoder_actor_cpus(extract, cluster_gpu_count()),
            "batch_size": extract.encode_batch_size}


def prewarmed_pool_name(encoder_config: BaseModel, request: dict, token: str) -> str:
    """The name of a pool started before a run's flow (``start_prewarmed_pool``): what the pool is (its encoder and
    ``pool_request``), so that the run takes it over only for the same encoder and pool, and ``token``, so that it
    is this run's."""
    key = content_key([encoder_config.model_dump_json(), json.dumps(request, sort_keys=True)])
    return f"{PREWARMED_POOL_PREFIX}{key[:16]}-{token}"


def start_prewarmed_pool(encoder_config: BaseModel, extract: ExtractConfig, token: str) -> tuple[EncoderPool, str]:
    """Encoder actors started before a run's flow, and their name to put in ``ExtractConfig.prewarmed_pool``; the
    caller keeps the pool until the flow returns (Ray stops actors nobody holds)."""
    request = pool_request(extract)
    name = prewarmed_pool_name(encoder_config, request, token)
    return EncoderPool.start(encoder_config, **request, name=name), name


def start_encoder_pool(encoder_config: BaseModel, extract: ExtractConfig) -> EncoderPool:
    """Encoder actors for ``encoder_config``, sized from the cluster; returns before their models are built. The
    pool named in ``extract.prewarmed_pool`` is taken over when it was started for the same encoder and pool, and
    stopped otherwise (the run's model turned out to use another encoder)."""
    request = pool_request(extract)
    if extract.prewarmed_pool:
        token = extract.prewarmed_pool.rsplit("-", 1)[-1]
        if extract.prewarmed_pool == prewarmed_pool_name(encoder_config, request, token):
            taken = EncoderPool.take_over(extract.prewarmed_pool, request["size"])
            if taken is not None:
                return taken
        else:
            EncoderPool.stop_named(extract.prewarmed_pool)
    return EncoderPool.start(encoder_config, **request)


def extract_clip_features(
    rows: list[dict],
    *,
    feature_dir: StorePath,
    encoder_config: BaseModel,
    frame_size: int,
    resize: Resize = "crop",
    embed_dim: int,
    sampling: SamplingConfig,
    extract: ExtractConfig,
    on_progress: Callable[[int, int], None] | None = None,
    encoders: EncoderPool | None = None,
) -> ExtractResult:
    """Decode, sample and encode ``rows`` (dicts with video_id, fingerprint, path); commit one run per unit.

    ``on_progress(videos_done, videos_total)`` is called as completion records stream in. ``encoders``: a pool
    started earlier (``start_encoder_pool``) for ``encoder_config``; without one, a pool is started here and
    shut down at the end.
    """
    started = time.monotonic()
    if not rows:
        return ExtractResult([], 0, 0, 0)
    units = {unit.key: unit for unit in plan_units(rows, encoder_config, sampling, extract.unit_videos)}
    unit_of = {video: unit.key for unit in units.values() for video in unit.videos}
    items = [{"video_id": r["video_id"], "fingerprint": r["fingerprint"], "path": r["path"],
              "unit": unit_of[r["video_id"]]} for r in sorted(rows, key=lambda row: row["video_id"])]
    check_schedulable({"feature writer actor": {"CPU": WRITER_CPUS}, "decoder actor": {"CPU": extract.decode_cpus}})
    own_pool = encoders is None
    if encoders is None:
        encoders = start_encoder_pool(encoder_config, extract)
    writer = ray.remote(FeaturePartWriter).options(num_cpus=WRITER_CPUS).remote(
        str(feature_dir), embed_dim, {key: len(unit.videos) for key, unit in units.items()}, extract.rows_per_shard)
    decoders = [ray.remote(DecoderActor).options(num_cpus=extract.decode_cpus).remote(DECODER_NICENESS)
                 for _ in range(min(decode_slots(extract, len(encoders.actors)), len(items)))]
    groups = decode_groups(items, len(decoders) * CALLS_PER_DECODER)
    arguments = {"sampling": sampling.model_dump(), "frame_size": frame_size, "resize": resize,
                 "batch_rows": extract.encode_batch_size}
    done, pending = 0, []
    first_batch_seconds: float | None = None

    def take(record: dict) -> None:
        nonlocal done, first_batch_seconds
        if first_batch_seconds is None:
            first_batch_seconds = time.monotonic() - started
        unit = units[record["unit"]]
        unit.add(record)
        if not unit.committed and unit.complete:
            _commit_unit(feature_dir, unit, encoder_config, sampling, embed_dim)
        finished = sum(len(u.finished_videos() & set(u.videos)) for u in units.values())
        if on_progress is not None and finished != done:
            done = finished
            on_progress(done, len(rows))

    def drain(wait: bool) -> None:
        # In submission order, which is the order the writer handles them in.
        while pending and (wait or ray.wait(pending[:1], timeout=0)[0]):
            for record in ray.get(pending.pop(0))["record"]:
                take(json.loads(record))

    running: dict = {}  # generator of a decode call → index of its decoder
    # Calls go only to decoders that are up: on a cluster whose free CPUs are split between nodes, one may wait for a
    # place, and calls queued on it would wait with it.
    starting = {decoder.__ray_ready__.remote(): index for index, decoder in enumerate(decoders)}
    up: set[int] = set()

    def start_decoding() -> None:
        calls = Counter(running.values())
        while groups and up:
            index = min(up, key=lambda i: calls[i])
            if calls[index] >= CALLS_PER_DECODER:
                return
            generator = decoders[index].decode.options(
                num_returns="streaming", _generator_backpressure_num_objects=DECODED_BATCHES_AHEAD,
            ).remote(groups.pop(0), **arguments)
            running[generator] = index
            calls[index] += 1

    try:
        while running or (groups and starting):
            # Blocks until a decoder is up, or a call has a batch ready or has ended (its generator is then ready).
            ready, _ = ray.wait([*running, *starting], num_returns=1, fetch_local=False)
            for waitable in ready:
                if waitable in starting:
                    ray.get(waitable)  # raises if the decoder could not start
                    up.add(starting.pop(waitable))
                    start_decoding()
                    continue
                try:
                    batch = next(waitable)
                except StopIteration:
                    del running[waitable]
                    start_decoding()
                    continue
                pending.append(writer.write.remote(encoders.submit([batch])))
            drain(wait=False)
        drain(wait=True)
    except BaseException:
        for decoder in decoders:
            ray.kill(decoder)
        if own_pool:
            encoders.shutdown(graceful=False)
        ray.kill(writer)
        raise
    for index, decoder in enumerate(decoders):
        if index in up:
            decoder.__ray_terminate__.remote()  # a normal exit keeps its task events in Ray's timeline
        else:
            ray.kill(decoder)
    if own_pool:
        encoders.shutdown()
    writer.__ray_terminate__.remote()  # after its last call; a normal exit keeps its task events in Ray's timeline
    incomplete = [unit.key for unit in units.values() if not unit.committed]
    if incomplete:
        raise RuntimeError(f"extraction ended with {len(incomplete)} units missing videos: a worker result was lost")
    failures = sorted((f for unit in units.values() for f in unit.failures.values()), key=lambda f: f["video_id"])
    encoded = {video for unit in units.values() for video in unit.encoded()}
    return ExtractResult(
        run_dirs=[as_path(feature_dir) / f"run-{key}" for key in units],
        videos_requested=len(rows),
        videos_encoded=len(encoded),
        clips=sum(unit.written[video] for unit in units.values() for video in unit.encoded()),
        failures=failures,
        seconds=time.monotonic() - started,
        first_batch_seconds=first_batch_seconds,
    )


def _commit_unit(feature_dir: StorePath, unit: UnitProgress, encoder_config: BaseModel, sampling: SamplingConfig,
                 embed_dim: int) -> None:
    # A video is committed only with all its clips; a failed video's clips (if any were written) are not listed.
    commit_run(as_path(feature_dir) / f"run-{unit.key}", unit.files, {
        "kind": "clip_features",
        "encoder": encoder_config.model_dump(),
        "sampling": sampling.model_dump(),
        "embed_dim": embed_dim,
        "videos": sorted(unit.encoded().items()),
        "failures": sorted(unit.failures.values(), key=lambda item: item["video_id"]),
        "written_on_nodes": sorted(unit.nodes),  # Ray node ids of the workers that wrote the parts
    })
    unit.committed = True
    crash_point("extract.unit_committed")
