"""Helpers of the service tests: a real published index of tiny real videos, and real uvicorn servers on loopback ports, for the service tests.

The index's codes are made by the same decode → encode → hash path the service uses for an uploaded query
(``QueryHasher.video_query``), so an indexed file uploaded as a query must find itself at distance 0.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import uvicorn

from hashing.bits import codes_to_arrow
from hashing.hashers import make_hasher
from pipeline.catalog import MediaEntry, catalog_row, rows_to_table, write_catalog
from pipeline.codes import code_schema
from pipeline.images import decode_media_clips
from pipeline.models import load_model, model_summary, save_model
from pipeline.publish import CollectionCodes, publish_index, with_catalog_columns
from pipeline.sampling import SamplingConfig
from pipeline.sample_collection import make_sample_collection
from pipeline.search import QueryHasher
from pipeline.service.app import create_app
from pipeline.service.config import ServiceConfig
from pipeline.service.live_index import LiveIndex
from pipeline.store import StoreLayout
from pipeline.thumbnails import clip_thumbnail

BITS = 32
INDEX = "main"
COLLECTION = "clips"
MEDIA_NAMES = ("first.mp4", "second.mp4", "odd name é.mp4")  # file names; captions come from the sample generator


@dataclass
class ServedStore:
    layout: StoreLayout
    media: dict[str, Path]  # uri → file
    video_ids: dict[str, str]  # uri → video_id
    model_id: str

    def publish(self, run_name: str, uris: list[str] | None = None) -> int:
        """Publish the codes of ``uris`` (default all) as a new version named by ``run_name``; its number."""
        return publish_codes(self, run_name, uris or list(self.media))


def publish_codes(store: ServedStore, run_name: str, uris: list[str]) -> int:
    model = load_model(store.layout, store.model_id)
    hasher = QueryHasher(model)
    spec = hasher.encoder.frame_spec
    rows, thumbnails = [], []
    for uri in uris:
        codes, _ = hasher.video_query(str(store.media[uri]))
        clips = decode_media_clips(str(store.media[uri]), model.sampling, spec.size, spec.resize)
        for (plan, frames), code in zip(clips, codes):
            rows.append((store.video_ids[uri], plan.clip_idx, plan.t_start, plan.t_end, code))
            thumbnails.append((store.video_ids[uri], plan.clip_idx, clip_thumbnail(frames)))
    table = pa.table({
        "video_id": [r[0] for r in rows],
        "clip_idx": pa.array([r[1] for r in rows], pa.int32()),
        "t_start": [float(r[2]) for r in rows],
        "t_end": [float(r[3]) for r in rows],
        "code": codes_to_arrow(np.stack([r[4] for r in rows])),
    }, schema=code_schema(BITS))
    from pipeline.catalog import read_catalog

    catalog = read_catalog(store.layout, COLLECTION)
    result = publish_index(store.layout, INDEX, model_id=store.model_id, code_bits=BITS,
                           collections=[CollectionCodes(COLLECTION, run_name, with_catalog_columns(table, catalog))],
                           metrics={COLLECTION: {"videos": len(uris)}}, model_info=model_summary(model),
                           thumbnails={COLLECTION: thumbnails})
    return result.version


def make_served_store(root: Path) -> ServedStore:
    from hashing.encoders import OpenClipEncoder, OpenClipEncoderConfig

    layout = StoreLayout(root / "store")
    # Real sample videos (coloured shapes moving over backgrounds), renamed: what the page shows looks like media.
    sample = pq.read_table(make_sample_collection(root / "sample", len(MEDIA_NAMES), seed=5)).to_pylist()
    media = {}
    for uri, row in zip(MEDIA_NAMES, sample):
        media[uri] = root / "media" / uri
        media[uri].parent.mkdir(parents=True, exist_ok=True)
        (root / "sample" / row["uri"]).rename(media[uri])
    captions = {uri: row["caption"] for uri, row in zip(MEDIA_NAMES, sample)}
    catalog = rows_to_table(catalog_row(MediaEntry(uri=uri, path=str(path), caption=captions[uri]), COLLECTION)
                            for uri, path in media.items())
    write_catalog(layout, COLLECTION, catalog)
    encoder = OpenClipEncoder(OpenClipEncoderConfig(arch="reelhash-tiny", allow_random_weights=True, device="cpu"))
    hasher = make_hasher("lsh", BITS, seed=3).fit(np.random.default_rng(0).standard_normal((20, encoder.embed_dim)))
    model_id = save_model(layout, "tiny", hasher=hasher, encoder_config=encoder.config, encoder_info=encoder.describe(),
                          sampling=SamplingConfig(frames_per_clip=2, clip_seconds=1.0), training={})
    video_ids = dict(zip(catalog["uri"].to_pylist(), catalog["video_id"].to_pylist()))
    store = ServedStore(layout, media, video_ids, model_id)
    store.publish("run-1")
    return store


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_service(config: ServiceConfig, live: LiveIndex) -> Iterator[str]:
    """A real uvicorn server for ``create_app(config, live)`` on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config, live), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def service_config(store: ServedStore, **overrides) -> ServiceConfig:
    return ServiceConfig(store=str(store.layout.root), index=INDEX, poll_seconds=0, **overrides)
