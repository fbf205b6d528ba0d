"""Encoder actors that start before extraction needs them, and the batches of decoded clips sent to them.

Building the encoder is the slowest part of a run's start (importing torch and open_clip, then the model: about
4 s for ViT-B-32 on an idle 2-core machine, three times that while videos decode beside it), so a run's flow
starts this pool first (``EncoderPool.start``, which returns at once), before it reads its catalog, and hands it
to extraction; each decoded batch then goes to the least busy actor (docs/architecture.md, "Start-up").
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import ray
from pydantic import BaseModel

from hashing.encoders import build_media_encoder
from pipeline.ray_runtime import check_schedulable, cluster_gpu_count

# Calls sent to an actor beyond one: a CPU actor runs two at once (CPU_ACTOR_CALLS_AT_ONCE) and one more waits, so it
# never waits for the driver; few enough that decoded batches wait in their decoder actors (which stop while their
# batches are not taken) rather than in actor queues.
QUEUED_CALLS_PER_ACTOR = 2

# Calls a CPU encoder actor runs at once. Its encoder's CPU streams (docs/encoders.md, "Threads") share the passes of
# every call running: while one call's last pass ends and its result goes back, the next call's passes keep the
# other stream busy instead of a core idling at the end of each call. On the throughput collection (2 cores, full
# benchmark runs): 8.5 → 9.2-9.4 clips/s on keyframe sampling; uniform, whose decoding takes more of the cores, stayed
# at 8.3-8.5. A GPU actor runs one call at a time: its batch size is what the GPU's free memory holds for one pass.
CPU_ACTOR_CALLS_AT_ONCE = 2


def actor_encoder_config(encoder_config: dict, assigned_gpus: list) -> dict:
    """The encoder config an actor builds from, given the GPUs Ray assigned to it (``ray.get_gpu_ids()``).

    Ray gives an actor with ``num_gpus=1`` one GPU and sets CUDA_VISIBLE_DEVICES to it, so inside the actor that GPU
    is ``cuda`` (cuda:0) whatever its number on the node. A ``cuda:N`` meant for a single process would name a GPU
    the actor cannot see (or another actor's), so it becomes ``cuda``. Without an assigned GPU nothing changes: an
    explicit ``cuda`` then fails loudly in select_device.
    """
    device = str(encoder_config.get("device", ""))
    if assigned_gpus and device.strip().lower().startswith("cuda:"):
        return {**encoder_config, "device": "cuda"}
    return encoder_config


class ClipEncoderActor:
    """Loads the encoder once; turns batches of decoded clips into float16 embeddings."""

    def __init__(self, encoder_config: dict, batch_size: int = 16):
        assigned_gpus = ray.get_gpu_ids() if ray.is_initialized() else []
        self.encoder = build_media_encoder(actor_encoder_config(encoder_config, assigned_gpus))
        self.batch_size = batch_size
        # An encoder without CPU streams spreads each pass over all its threads: two calls at once would run twice
        # as many threads as the actor has CPUs, so its calls take turns.
        streams = getattr(self.encoder, "streams", 1)
        self.one_call_at_a_time = threading.Lock() if streams <= 1 else contextlib.nullcontext()

    def ready(self) -> bool:
        return True

    def encode_texts(self, texts: list[str]) -> tuple[str, np.ndarray]:
        """(encoder id, float32 text embeddings): a run's new captions, encoded by the model already loaded here."""
        with self.one_call_at_a_time:
            return self.encoder.encoder_id, self.encoder.encode_text(texts)

    def __call__(self, batch: dict) -> dict:
        ok = (batch["error"] == "") & (batch["clip_idx"] >= 0)  # not failure or end-of-video rows
        embeddings = np.zeros((len(ok), self.encoder.embed_dim), np.float16)
        if ok.any():
            with self.one_call_at_a_time:
                embeddings[ok] = self.encoder.encode_clips(np.asarray(batch["frames"])[ok]).astype(np.float16)
        out = {key: value for key, value in batch.items() if key != "frames"}
        out["embedding"] = embeddings
        return out

    def encode_batches(self, *batches: dict) -> dict:
        """Batches of decoded clips (dicts of columns, as ``pipeline.extract.decode_batches`` yields them) as one
        batch, encoded ``batch_size`` clips per call of the encoder; the frames are dropped from the result."""
        # One batch per call is the rule (decoders yield full ones): no copy of its frames then.
        batch = batches[0] if len(batches) == 1 else {
            key: np.concatenate([part[key] for part in batches]) for key in batches[0]}
        rows = len(batch["clip_idx"])
        parts = [self({key: value[i:i + self.batch_size] for key, value in batch.items()})
                 for i in range(0, rows, self.batch_size)]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


class EncoderPool:
    """``size`` ClipEncoderActor actors, started in the background; batches go to the least busy one."""

    def __init__(self, actors: list, taken_over: bool = False):
        self.actors = actors
        self.in_flight: dict[int, list] = {index: [] for index in range(len(actors))}
        self.taken_over = taken_over  # started earlier under a name (``take_over``), not by this pool

    @classmethod
    def start(cls, encoder_config: BaseModel, *, size: int, encoder_cpus: float, batch_size: int,
              name: str | None = None) -> EncoderPool:
        """Ask Ray for the actors and return without waiting for their models; a request no node can hold is
        refused here (UnschedulableError), because Ray would keep it pending without an error. ``name``: the
        actors are named ``<name>-<index>`` (in this process's Ray job), so that ``take_over`` finds them."""
        gpus = cluster_gpu_count()
        request = {"CPU": encoder_cpus, "GPU": 1 if gpus > 0 else 0}
        check_schedulable({"encoder actor": request})
        options = {"num_cpus": encoder_cpus,
                   **({"num_gpus": 1} if gpus > 0 else {"max_concurrency": CPU_ACTOR_CALLS_AT_ONCE})}
        remote = ray.remote(ClipEncoderActor)
        return cls([remote.options(**options, **({"name": f"{name}-{index}"} if name else {})).remote(
            encoder_config.model_dump(), batch_size) for index in range(size)])

    @classmethod
    def take_over(cls, name: str, size: int) -> EncoderPool | None:
        """The ``size`` actors a ``start(..., name=name)`` of this process started, or None when any is missing
        (those found are stopped: they would hold CPUs the run needs)."""
        try:
            return cls([ray.get_actor(f"{name}-{index}") for index in range(size)], taken_over=True)
        except ValueError:  # one of them is missing
            cls.stop_named(name)
            return None

    @staticmethod
    def stop_named(name: str) -> None:
        """Stop the actors of ``start(..., name=name)`` that are still alive."""
        for other in ray.util.list_named_actors():
            if other.startswith(f"{name}-"):
                ray.kill(ray.get_actor(other))

    def submit(self, batches: list[ray.ObjectRef]) -> ray.ObjectRef:
        """Send refs of decoded batches to the actor with the fewest calls in flight, first waiting while every
        actor has ``1 + QUEUED_CALLS_PER_ACTOR``; returns the ref of the encoded batch."""
        while True:
            calls = [ref for refs in self.in_flight.values() for ref in refs]
            finished = set(ray.wait(calls, num_returns=len(calls), timeout=0)[0]) if calls else set()
            for index in self.in_flight:
                self.in_flight[index] = [ref for ref in self.in_flight[index] if ref not in finished]
            index = min(self.in_flight, key=lambda i: len(self.in_flight[i]))
            if len(self.in_flight[index]) <= QUEUED_CALLS_PER_ACTOR:
                break
            ray.wait([ref for refs in self.in_flight.values() for ref in refs], num_returns=1)
        # Refs as top-level arguments, so that Ray hands the actor the batches themselves.
        ref = self.actors[index].encode_batches.remote(*batches)
        self.in_flight[index].append(ref)
        return ref

    def encode_texts(self, texts: list[str]) -> tuple[str, np.ndarray]:
        """Captions encoded by one of the actors: (its encoder id, float32 embeddings)."""
        if not self.actors:
            raise RuntimeError("the encoder pool is shut down")
        return ray.get(self.actors[0].encode_texts.remote(texts))

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait until every actor has built its encoder; an actor that failed to raises its error here."""
        ray.get([actor.ready.remote() for actor in self.actors], timeout=timeout_s)

    def shutdown(self, graceful: bool = True) -> None:
        """Stop the actors: gracefully once their calls are done (they exit normally, so Ray keeps their task
        events), or at once (``graceful=False``: a run with nothing to decode, or one that failed)."""
        for actor in self.actors:
            if graceful:
                actor.__ray_terminate__.remote()
            else:
                ray.kill(actor)
        self.actors, self.in_flight = [], {}
