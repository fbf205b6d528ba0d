"""`reelhash demo`: sample collection → index → (train DSMHN → re-index) → example searches → where things are.

Without CLIP weights (the default offline) a random CLIP cannot make text search meaningful, so the demo
indexes the collection once with it (the catalog, and a chance-level baseline), trains DSMHN on the sample
collection's labels through the `train_hasher` flow and re-indexes with the trained model: text queries are
then encoded by DSMHN's text stream and find videos whose labels match. With CLIP weights it indexes with
CLIP + ITQ only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from flows.cli import RANDOM_WEIGHTS_WARNING, print_run_summary
from flows.config import IndexRunConfig
from flows.index_collection import index_collection
from pipeline.sample_collection import existing_sample_collection, make_sample_collection
from pipeline.search import PublishedIndex, QueryHasher
from pipeline.store import StoreLayout

DEMO_COLLECTION = "sample"
DEMO_INDEX = "demo"
DEMO_BITS = 64
# With random weights every architecture is equally at chance, so the baseline pass uses the tiny one
# (seconds instead of minutes on a CPU) unless --clip-arch names another.
RANDOM_BASELINE_ARCH = "reelhash-tiny"
# The DSMHN run of the demo: the method's defaults (30 epochs), without the 2-D ablation (`reelhash train` runs
# it); docs/training.md, "make demo", has the demo's time and quality measured.
DEMO_TRAIN_OPTIONS = {"ablation": False}
# Handwritten queries (not from the captions' templates) and the labels a matching video has.
HANDWRITTEN_QUERIES = (
    ("a red circle moving left", {"colour:red", "shape:circle", "motion:left"}),
    ("a blue square moving to the right", {"colour:blue", "shape:square", "motion:right"}),
    ("a yellow star spinning", {"colour:yellow", "shape:star", "motion:rotate"}),
    ("a green triangle getting bigger", {"colour:green", "shape:triangle", "motion:grow"}),
)
TOP_K = 5
DSMHN_NOTE = (
    "NOTE: CLIP text search with random weights would be at chance; the searches below use the DSMHN model "
    "trained on this collection's labels, whose text stream makes text search meaningful."
)


def run_demo(*, store: str | None, directory: str, n_videos: int, seed: int, encoder: dict) -> int:
    started = time.monotonic()
    layout = StoreLayout.from_option(store)
    random_weights = not (encoder.get("pretrained") or encoder.get("checkpoint_path"))
    if random_weights:
        encoder = {**encoder, "allow_random_weights": True, "arch": encoder.get("arch") or RANDOM_BASELINE_ARCH}
        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)
    else:
        encoder = {**encoder, "arch": encoder.get("arch") or "ViT-B-32"}
    steps = 6 if random_weights else 4

    manifest = existing_sample_collection(directory, n_videos)
    if manifest is not None:
        print(f"[1/{steps}] reusing the sample collection in {directory}")
    else:
        print(f"[1/{steps}] generating {n_videos} sample videos in {directory}")
        manifest = make_sample_collection(directory, n_videos, seed, progress=True)

    if random_weights:
        print(f"\n[2/{steps}] indexing with the random CLIP {encoder['arch']} (catalog + a chance-level baseline; "
              "not published) through the Prefect flow 'index_collection' on a local Ray instance")
        baseline = index_collection(IndexRunConfig(
            source=str(manifest), collection=DEMO_COLLECTION, index=DEMO_INDEX, store=str(layout.root),
            encoder=encoder, method="itq", bits=DEMO_BITS, publish=False, refit=True,
        ))
        print_run_summary(baseline)
        model_id, train_report = _train_dsmhn(layout, encoder, steps)
        print(f"\n[4/{steps}] re-indexing with the trained model {model_id} (flow 'index_collection')")
        result = index_collection(IndexRunConfig(
            source=str(manifest), collection=DEMO_COLLECTION, index=DEMO_INDEX, store=str(layout.root),
            model=model_id,
        ))
    else:
        print(f"\n[2/{steps}] indexing through the Prefect flow 'index_collection' on a local Ray instance")
        result = index_collection(IndexRunConfig(
            source=str(manifest), collection=DEMO_COLLECTION, index=DEMO_INDEX, store=str(layout.root),
            encoder=encoder, method="itq", bits=DEMO_BITS,
        ))
        train_report = None
    print_run_summary(result)

    print(f"\n[{steps - 1}/{steps}] example searches (✓ = the video has every label of the query; "
          "k/n = it has k of the query's n labels)")
    if random_weights:
        print(DSMHN_NOTE)
    _example_searches(layout, manifest)

    print(f"\n[{steps}/{steps}] where things are")
    print(f"  store:            {layout.root}")
    print(f"  published index:  {result['published']['version_dir'] if result['published'] else '(not published)'}")
    print(f"  index report:     {result['report_dir']}/report.md (plots beside it)")
    if train_report:
        print(f"  training report:  {train_report}/report.md (loss curves, DSMHN vs ITQ on the random CLIP)")
        print(f"  model:            {layout.model_dir(result['model_id'])}")
        print(f"  more bit lengths and the 3-D vs 2-D ablation: .venv/bin/reelhash train --store {layout.root} "
              f"--method dsmhn --collection {DEMO_COLLECTION} --bits 16,32,64,128")
    print(f'  try:              .venv/bin/reelhash search --store {layout.root} "a red square slides left"')
    if random_weights:
        print("\n" + RANDOM_WEIGHTS_WARNING)
        print("The published demo index uses DSMHN (trained on the sample labels), not CLIP.")
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s")
    return 0


def _train_dsmhn(layout: StoreLayout, encoder: dict, steps: int) -> tuple[str, str]:
    from flows.train_hasher import train_hasher
    from pipeline.training.base import TrainRunConfig

    print(f"\n[3/{steps}] training DSMHN ({DEMO_BITS} bits) on the train split through the Prefect flow "
          "'train_hasher' (decoded clips are cached under <store>/clips/)")
    trained = train_hasher(TrainRunConfig(
        method="dsmhn", collection=DEMO_COLLECTION, store=str(layout.root), bits=[DEMO_BITS], encoder=encoder,
        options=DEMO_TRAIN_OPTIONS,
    ))
    (model,) = trained["models"]
    metrics = model["metrics"]
    print(f"model {model['model_id']} trained in {model['seconds']:.0f} s on {trained['prepared']['train_videos']} "
          f"videos; held-out test split ({trained['prepared']['test_videos']} videos), mAP@all:")
    for direction in ("text_to_video", "video_to_text"):
        print(f"  {direction:<14} same label set {metrics[f'{direction}.mAP_exact']:.3f} "
              f"(chance {metrics['chance.mAP_exact']:.3f})   shares a label {metrics[f'{direction}.mAP_any']:.3f} "
              f"(chance {metrics['chance.mAP_any']:.3f})   R@1 {metrics[f'{direction}.R@1']:.1f}%")
    return model["model_id"], trained["report_dir"]


def _example_searches(layout: StoreLayout, manifest: Path) -> None:
    index = PublishedIndex.open(layout, DEMO_INDEX)
    query_hasher = QueryHasher.for_index(layout, index)
    rows = pq.read_table(manifest).to_pylist()
    labels_by_uri = {r["uri"]: set(r["labels"]) for r in rows}
    test_rows = [r for r in rows if r["split"] == "test"] or rows
    single = [r for r in test_rows if len(r["labels"]) == 3] or test_rows
    queries = [(r["caption"], set(r["labels"])) for r in (single[0], single[len(single) // 2])]
    queries += list(HANDWRITTEN_QUERIES)
    matched = shown = 0
    for query, wanted in queries:
        present = sum(wanted <= labels for labels in labels_by_uri.values())
        print(f'\nreelhash search "{query}"   ({present} videos in the collection have all its labels)')
        hits = index.search(query_hasher.text_codes([query]), TOP_K)
        matched += _print_labelled_hits(hits, index, labels_by_uri, wanted)
        shown += min(len(hits), present)
    print(f"\n{matched} of {shown} possible top-{TOP_K} results have every label of their query.")
    like = Path(manifest).parent / test_rows[0]["uri"]
    print(f"\nreelhash search --like {like}   (labels: {', '.join(sorted(labels_by_uri[test_rows[0]['uri']]))})")
    _print_labelled_hits(index.search(query_hasher.video_codes(str(like)), TOP_K), index, labels_by_uri,
                         labels_by_uri[test_rows[0]["uri"]])


def _print_labelled_hits(hits, index, labels_by_uri: dict[str, set[str]], wanted: set[str]) -> int:
    """Print the hits like `reelhash search`, with how many query labels each has; returns the full matches."""
    print(f"index {index.name} v{index.version} ({index.size} clips, {index.manifest['code_bits']} bits)")
    print(f"{'rank':>4} {'dist':>4} {'labels':>6}  {'time range':<15} uri — caption")
    full = 0
    for hit in hits:
        labels = labels_by_uri.get(hit.uri, set())
        full += wanted <= labels
        mark = "✓" if wanted <= labels else f"{len(wanted & labels)}/{len(wanted)}"
        span = f"{hit.t_start:6.1f}–{hit.t_end:.1f}s"
        print(f"{hit.rank:>4} {hit.distance:>4} {mark:>6}  {span:<15} {hit.uri}" + (f" — {hit.caption}" if hit.caption else ""))
    return full
