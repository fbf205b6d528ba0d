"""`reelhash demo`: sample collection → index_collection flow on local Ray → evaluation → publish → searches."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from flows.cli import RANDOM_WEIGHTS_WARNING, print_hits, print_run_summary
from flows.config import IndexRunConfig
from flows.index_collection import index_collection
from pipeline.sample_collection import make_sample_collection
from pipeline.search import PublishedIndex, QueryHasher
from pipeline.store import StoreLayout

DEMO_COLLECTION = "sample"
DEMO_INDEX = "demo"


def run_demo(*, store: str | None, directory: str, n_videos: int, seed: int, encoder: dict) -> int:
    started = time.monotonic()
    layout = StoreLayout.from_option(store)
    random_weights = not (encoder.get("pretrained") or encoder.get("checkpoint_path"))
    if random_weights:
        encoder = {**encoder, "allow_random_weights": True}
        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)

    manifest = Path(directory) / "manifest.parquet"
    if manifest.exists() and pq.read_metadata(manifest).num_rows == n_videos:
        print(f"[1/4] reusing the sample collection in {directory}")
    else:
        print(f"[1/4] generating {n_videos} sample videos in {directory}")
        make_sample_collection(directory, n_videos, seed, progress=True)

    print("[2/4] indexing through the Prefect flow 'index_collection' on a local Ray instance")
    result = index_collection(IndexRunConfig(
        source=str(manifest), collection=DEMO_COLLECTION, index=DEMO_INDEX, store=str(layout.root),
        encoder=encoder, method="itq", bits=64,
    ))
    print_run_summary(result)

    print("\n[3/4] example searches")
    index = PublishedIndex.open(layout, DEMO_INDEX)
    query_hasher = QueryHasher.for_index(layout, index)
    rows = pq.read_table(manifest).to_pylist()
    test_rows = [r for r in rows if r["split"] == "test"] or rows
    for query in [test_rows[0]["caption"], test_rows[len(test_rows) // 2]["caption"], "a small blue circle moving to the right"]:
        print(f'\nreelhash search "{query}"')
        print_hits(index.search(query_hasher.text_codes([query]), 5), index)
    like = Path(directory) / test_rows[0]["uri"]
    print(f"\nreelhash search --like {like}")
    print_hits(index.search(query_hasher.video_codes(str(like)), 5), index)

    print("\n[4/4] where things are")
    print(f"  store:          {layout.root}")
    print(f"  published index: {result['published']['version_dir'] if result['published'] else '(not published)'}")
    print(f"  report:          {result['report_dir']}/report.md (plots beside it)")
    print("  try:            .venv/bin/reelhash search --store", layout.root, '"a red square slides left"')
    if random_weights:
        print("\n" + RANDOM_WEIGHTS_WARNING)
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s")
    return 0
