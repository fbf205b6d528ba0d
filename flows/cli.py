"""The `reelhash` command. Subcommands are thin: they parse options, call the flows/pipeline, print.

Errors are one line on stderr (``error: …``) with the exit status of ``pipeline/errors.py``'s table; tracebacks
only with ``--debug``. Heavy libraries (torch, open_clip, Ray, Prefect) are imported inside the commands that
need them, so trivial commands (``--help``, ``collection list``, ``rollback``, ``eval``) start quickly, and the
commands that run flows check their options (encoder options included, see ``preflight_run``) before importing
Prefect or Ray: a wrong option fails in about a second, not after a flow run has started.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import (
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    ReelhashError,
    UsageError,
)

if TYPE_CHECKING:
    from flows.config import IndexRunConfig
    from hashing.encoders.weights import OpenClipEncoderConfig
    from pipeline.encoder_pool import EncoderPool

MAX_K = 10_000
DEBUG_FLAG = "--debug"

RANDOM_WEIGHTS_WARNING = (
    "WARNING: the CLIP weights are RANDOM (no checkpoint was given), so text-search quality is at chance. "
    "Give --clip-checkpoint PATH or --clip-pretrained TAG (e.g. 'openai', downloaded once into the local cache) "
    "for meaningful results."
)


# Prefect waits 20 s for its ephemeral API by default. On a machine where it has never run, the server first
# migrates a new SQLite database; on 2 busy cores that took longer (first benchmark run of 2026-12-02:
# "Timed out while attempting to connect to ephemeral Prefect API server"), so the first command failed.
EPHEMERAL_API_STARTUP_TIMEOUT_S = 180


def prepare_environment() -> None:
    """Process-wide settings for Prefect and Ray; call before either is imported (the CLI edge, benchmarks)."""
    # Prefect's server telemetry write logs a spurious "database is locked" on local SQLite servers.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_API_STARTUP_TIMEOUT_S))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


class OneLineConsoleErrors(logging.Filter):
    """On the terminal, a failed task or flow is one line; the Prefect API and UI keep the whole traceback.

    Records reach Prefect's API handler (on the ``prefect.flow_runs`` / ``prefect.task_runs`` loggers) before
    they propagate to the root logger's console handler, so trimming them here hides nothing from the UI.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info or record.exc_text:
            record.msg = (record.getMessage().splitlines() or [""])[0]
            record.args = ()
            record.exc_info = record.exc_text = None
        return True


def hide_console_tracebacks(debug: bool) -> None:
    """Call after Prefect is imported (it configures logging then): console tracebacks only with --debug."""
    if debug:
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not any(
                isinstance(f, OneLineConsoleErrors) for f in handler.filters):
            handler.addFilter(OneLineConsoleErrors())


def _store_parent(*, inherit: bool = False) -> argparse.ArgumentParser:
    """``--store``; with ``inherit`` the option leaves the namespace alone when absent, so a value given to the
    parent command (``reelhash collection --store X list``) is not overwritten by the sub-command's default."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--store", metavar="ROOT", default=argparse.SUPPRESS if inherit else None,
                        help="store root (default: $REELHASH_STORE or ./reelhash-data)")
    return parent


def bounded(cast, low, high=None):
    """An argparse type: a value of ``cast`` (int or float) in [low, high] (high None = unbounded), else a one-line
    usage error."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {'int' if cast is int else 'number'} value: {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"{low:g}…{high:g}" if high is not None else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value:g}")
        return value
    return parse


def bounded_int(low: int, high: int | None = None):
    return bounded(int, low, high)


def bounded_float(low: float, high: float | None = None):
    return bounded(float, low, high)


def _encoder_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("encoder (open_clip)")
    group.add_argument("--clip-arch", default="ViT-B-32", help="open_clip architecture (default ViT-B-32)")
    weights = group.add_mutually_exclusive_group()
    weights.add_argument("--clip-pretrained", metavar="TAG",
                         help="open_clip pretrained tag (e.g. openai): from the local cache, else downloaded once "
                              "from the Hugging Face hub into it (never with HF_HUB_OFFLINE=1)")
    weights.add_argument("--clip-checkpoint", metavar="PATH", help="local open_clip checkpoint / state dict file")
    weights.add_argument("--random-weights", action="store_true",
                         help="use a randomly initialised CLIP (tests and demos; text search is then at chance)")
    group.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:N")
    group.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                       help="auto: fp16 autocast on a GPU; the image tower in bf16 on a CPU with native bf16 "
                            "(about 3.5x fp32 for ViT-B-32), fp32 on other CPUs; fp32 forces full precision "
                            "(docs/encoders.md)")
    group.add_argument("--cpu-streams", type=bounded(int, 1, 256), metavar="N",
                       help="on a CPU, N forward passes side by side, one thread each (default: one per encoder "
                            "thread, about 5-15 %% faster beside decoding than 1, one pass on all threads)")
    return parent


def _encoder_config(args: argparse.Namespace) -> dict:
    return {"arch": args.clip_arch, "pretrained": args.clip_pretrained, "checkpoint_path": args.clip_checkpoint,
            "allow_random_weights": args.random_weights, "device": args.device, "precision": args.precision,
            "cpu_streams": args.cpu_streams}


def encoder_options(options: dict) -> OpenClipEncoderConfig:
    """The encoder options as the flows' OpenClipEncoderConfig; importing it costs no torch, Prefect or Ray."""
    from hashing.encoders.weights import OpenClipEncoderConfig

    return OpenClipEncoderConfig(**options)


def print_note(message: str) -> None:
    print(message, file=sys.stderr)


def check_encoder(options: dict) -> None:
    """Check encoder options as building the encoder would (arch, device, weights), without torch, Prefect or Ray.

    A pretrained tag's weights not yet in the local cache are downloaded here, once, before any Ray worker
    starts; the workers then find them in the cache.
    """
    from hashing.encoders.weights import check_encoder_options

    check_encoder_options(encoder_options(options), log=print_note)


def _add_run_control(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run control")
    group.add_argument("--refit", action="store_true", help="fit a new hash model even if the index has one")
    group.add_argument("--force", action="store_true", help="publish even when the quality gate objects")
    group.add_argument("--quality-tolerance", type=bounded_float(0.0, 1.0), default=0.1,
                       help="refuse to publish when a metric falls by more than this fraction (default 0.1)")
    group.add_argument("--quality-min-videos", type=bounded_int(1), default=20, metavar="N",
                       help="gate only on evaluation sets of at least N videos (default 20; smaller sets are noise)")
    group.add_argument("--wait", type=bounded_float(0.0), default=0.0, metavar="SECONDS",
                       help="wait this long for another run of the same index (default: refuse at once)")


def _run_control(args: argparse.Namespace) -> dict:
    return {"refit": args.refit, "force_publish": args.force, "quality_tolerance": args.quality_tolerance,
            "quality_min_videos": args.quality_min_videos, "wait_seconds": args.wait}


def build_parser() -> argparse.ArgumentParser:
    store, encoder = _store_parent(), _encoder_parent()
    parser = argparse.ArgumentParser(
        prog="reelhash",
        description="Index a media archive into binary hash codes and search it by text or by example "
                    "in Hamming space. Runs are Prefect flows over Ray; see README.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sample = commands.add_parser("make-sample", parents=[store], help="generate a sample video collection",
                                 description="Write N synthetic H.264 videos with captions, labels and a split "
                                             "manifest (DIR/manifest.parquet).")
    sample.add_argument("directory", metavar="DIR", help="directory to write the videos and manifest.parquet into")
    sample.add_argument("--videos", type=bounded_int(1, 100_000), default=40, help="number of videos (default 40)")
    sample.add_argument("--seed", type=int, default=0, help="random seed of the generated content (default 0)")
    sample.add_argument("--json", action="store_true", help="print what was written as JSON")

    index = commands.add_parser("index", parents=[store, encoder], help="index a collection (Prefect flow)",
                                description="Catalog, decode, encode, hash, evaluate and publish a collection "
                                            "as a new version of an index.")
    index.add_argument("source", metavar="SOURCE", help="directory, glob, or manifest (.parquet/.csv with a uri column)")
    index.add_argument("--collection", required=True, help="collection name")
    index.add_argument("--index", dest="index_name", help="index to publish to (default: the collection name)")
    index.add_argument("--method", choices=["itq", "lsh"], default="itq", help="hash method (default itq)")
    index.add_argument("--bits", type=int, default=64, help="code length, 16..2048, multiple of 8 (default 64)")
    index.add_argument("--model", metavar="MODEL_ID", help="hash with this saved model (id or alias) instead of "
                                                          "the index's model or a fitted one")
    index.add_argument("--sampling", choices=["uniform", "keyframe"], default="uniform",
                       help="frame sampling: exact uniform frames, or frames at keyframes (fast on long videos)")
    index.add_argument("--clip-seconds", type=bounded_float(0.1, 3600.0), default=4.0,
                       help="clip length in seconds (default 4)")
    index.add_argument("--frames-per-clip", type=bounded_int(1, 256), default=8, help="frames sampled per clip (default 8)")
    index.add_argument("--max-failure-rate", type=bounded_float(0.0, 1.0), default=0.5,
                       help="fail the run when more than this fraction of files fail (default 0.5)")
    index.add_argument("--encoder-actors", type=bounded_int(1, 1024), default=None,
                       help="maximum encoder actors (default: from the Ray cluster's GPUs or CPUs)")
    index.add_argument("--encoder-cpus", type=bounded_float(0.1, 1024.0), default=None, metavar="N",
                       help="logical CPUs per encoder actor, which are its torch threads (default 2; 1 per actor "
                            "on a cluster with GPUs)")
    _add_run_control(index)
    index.add_argument("--unit-videos", type=bounded_int(1, 10_000), default=200, metavar="N",
                       help="commit extraction work in units of N videos: a killed run, started again, redoes at most "
                            "the units in flight (default 200)")
    index.add_argument("--json", action="store_true", help="print the run summary as JSON")

    collection = commands.add_parser("collection", parents=[store], help="manage the collections registry",
                                     description="Register collections (a source of media) and the indexes that "
                                                 "cover them; 'reelhash nightly' re-indexes them.")
    collection_commands = collection.add_subparsers(dest="collection_command", required=True, metavar="ACTION")
    inherited_store = _store_parent(inherit=True)
    add = collection_commands.add_parser("add", parents=[inherited_store], help="register a collection",
                                         description="Register NAME with its SOURCE (directory or glob); with "
                                                     "--manifest, the manifest lists the files and their captions.")
    add.add_argument("name", metavar="NAME", help="collection name")
    add.add_argument("source", metavar="SOURCE", help="directory, glob, or manifest file")
    add.add_argument("--manifest", metavar="FILE", help="a manifest (.parquet/.csv with uri, caption, labels, split)")
    add.add_argument("--index", dest="index_name", help="add the collection to this index (default: an index of "
                                                       "the same name)")
    add.add_argument("--json", action="store_true", help="print the registered entry as JSON")
    listing = collection_commands.add_parser("list", parents=[inherited_store], help="list collections and indexes",
                                             description="List the registered collections, their sources and the "
                                                         "indexes that cover them.")
    listing.add_argument("--json", action="store_true", help="print the registry as JSON")
    remove = collection_commands.add_parser("remove", parents=[inherited_store], help="unregister a collection",
                                            description="Unregister a collection; the next nightly run of its "
                                                        "indexes publishes versions without it.")
    remove.add_argument("name", metavar="NAME", help="collection name")
    remove.add_argument("--json", action="store_true", help="print what was removed as JSON")

    nightly = commands.add_parser("nightly", parents=[store, encoder], help="run the nightly re-index once, now",
                                  description="Run the Prefect flow 'nightly_reindex' once: every registered "
                                              "collection of the index, incrementally, then one publish.")
    nightly.add_argument("--index", dest="index_name", required=True, help="the index to re-index")
    nightly.add_argument("--method", choices=["itq", "lsh"], default="itq",
                         help="hash method when the index has no model yet (default itq)")
    nightly.add_argument("--bits", type=int, default=64, help="code length when the index has no model yet (default 64)")
    nightly.add_argument("--model", metavar="MODEL_ID",
                         help="hash with this saved model, id or alias (default: the index's current model)")
    nightly.add_argument("--max-failure-rate", type=bounded_float(0.0, 1.0), default=0.5,
                         help="fail the run when more than this fraction of a collection's files fail (default 0.5)")
    _add_run_control(nightly)
    nightly.add_argument("--json", action="store_true", help="print the run summary as JSON")

    schedule = commands.add_parser("schedule", parents=[store], help="serve the nightly deployment (cron)",
                                   description="Create the deployment 'nightly-INDEX' of flow 'nightly_reindex' with "
                                               "a cron schedule and a limit of one run at a time, and serve it "
                                               "(runs until stopped). For a work pool instead, see infra/prefect.yaml.")
    schedule.add_argument("--index", dest="index_name", required=True, help="the index the deployment re-indexes")
    schedule.add_argument("--cron", default="0 2 * * *", help="cron schedule (default '0 2 * * *')")
    schedule.add_argument("--timezone", default="UTC", help="IANA time zone of the schedule (default UTC)")
    schedule.add_argument("--run-once", action="store_true",
                          help="execute the deployment's runs that are due now, then exit (for tests and cron)")

    rollback = commands.add_parser("rollback", parents=[store], help="point CURRENT back at an earlier version",
                                   description="Atomically point the index's CURRENT at an earlier version "
                                               "(default: the one before the current).")
    rollback.add_argument("--index", dest="index_name", required=True, help="the index to roll back")
    rollback.add_argument("--to", dest="to_version", metavar="VERSION", help="version to restore, e.g. v3 "
                                                                            "(default: the one before CURRENT)")
    rollback.add_argument("--json", action="store_true", help="print the versions before and after as JSON")

    train = commands.add_parser("train", parents=[store, encoder], help="train hash models (Prefect flow)",
                                description="Run the Prefect flow 'train_hasher': train one model per bit length "
                                            "of a method on an indexed collection and write a report with loss "
                                            "curves. Use a model with 'reelhash index --model ID'.")
    train.add_argument("--method", choices=["dsmhn", "clip4hashing"], required=True,
                       help="dsmhn: supervised two-stream (needs labels); clip4hashing: unsupervised on CLIP features "
                            "(needs captions)")
    train.add_argument("--collection", required=True, help="an indexed collection to learn from")
    train.add_argument("--bits", default="64", help="comma-separated bit lengths (default 64), e.g. 16,32,64,128")
    train.add_argument("--model-prefix", help="model ids are PREFIX-<bits>b (default METHOD-COLLECTION)")
    train.add_argument("--epochs", type=bounded_int(1, 100_000), help="training epochs (method default when omitted)")
    train.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                       help="a method hyper-parameter (VALUE parsed as JSON when possible); repeatable")
    train.add_argument("--sampling", choices=["uniform", "keyframe"], default="uniform", help="frame sampling")
    train.add_argument("--clip-seconds", type=bounded_float(0.1, 3600.0), default=4.0,
                       help="clip length in seconds (default 4)")
    train.add_argument("--frames-per-clip", type=bounded_int(1, 256), default=8, help="frames sampled per clip (default 8)")
    train.add_argument("--seed", type=int, default=0, help="random seed of initialisation and batching (default 0)")
    train.add_argument("--json", action="store_true", help="print the run summary as JSON")

    rehash = commands.add_parser("rehash", parents=[store], help="re-hash an index with another model (Prefect flow)",
                                 description="Run the Prefect flow 'rehash_index': re-hash every collection of a "
                                             "published index with a stored model (e.g. one from 'reelhash train') "
                                             "from the cached CLIP features, and publish a new index version. "
                                             "Decodes no video.")
    rehash.add_argument("--model", required=True, metavar="MODEL_ID", help="id or alias of the stored model to hash with")
    rehash.add_argument("--index", dest="index_name", required=True, help="the published index to re-hash")
    rehash.add_argument("--wait", type=bounded_float(0.0), default=0.0, metavar="SECONDS",
                        help="wait this long for another run of the same index to finish (default: refuse at once)")
    rehash.add_argument("--force", action="store_true", help="publish even when the quality gate objects")
    rehash.add_argument("--quality-tolerance", type=bounded_float(0.0, 1.0), default=0.1,
                        help="refuse to publish when a metric falls by more than this fraction (default 0.1)")
    rehash.add_argument("--quality-min-videos", type=bounded_int(1), default=20, metavar="N",
                        help="gate only on evaluation sets of at least N videos (default 20)")
    rehash.add_argument("--json", action="store_true", help="print the run summary as JSON")

    search = commands.add_parser("search", parents=[store], help="search a published index",
                                 description="Search by text, or by example with --like (a video file or an "
                                             "indexed video_id). Prints rank, Hamming distance, uri, clip time "
                                             "range and caption.")
    search.add_argument("text", nargs="?", help="text query")
    search.add_argument("--like", metavar="PATH_OR_VIDEO_ID", help="find videos similar to this file or indexed video")
    search.add_argument("--index", dest="index_name", help="index name (default: the only index in the store)")
    search.add_argument("--k", type=bounded_int(1, MAX_K), default=10,
                        help=f"number of videos to return, 1…{MAX_K:,} (default 10)")
    search.add_argument("--json", action="store_true", help="print results as JSON")

    serve = commands.add_parser(
        "serve", parents=[store], help="serve a search API and page over a published index",
        description="A long-running search service: an HTTP API (OpenAPI docs at /docs) and a web page at /. It "
                    "answers every query from one published version and switches to a new CURRENT (after a publish "
                    "or a rollback) without a failed request. Set REELHASH_API_TOKEN to require a bearer token for "
                    "everything but /healthz.")
    serve.add_argument("--index", dest="index_name", help="index name (default: the only index in the store)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)")
    serve.add_argument("--port", type=bounded_int(0, 65535), default=8000, help="port (default 8000; 0: any free)")
    serve.add_argument("--poll-seconds", type=bounded_float(0.0), default=2.0, metavar="S",
                       help="how often to check CURRENT for a new version (default 2; 0: never)")
    serve.add_argument("--max-k", type=bounded_int(1, MAX_K), default=1000, help="largest k a query may ask for")
    serve.add_argument("--max-upload-mb", type=bounded_float(0.001), default=64.0, metavar="MB",
                       help="largest query upload in MiB (default 64)")
    serve.add_argument("--max-upload-seconds", type=bounded_float(0.1), default=120.0, metavar="S",
                       help="longest query video in seconds (default 120)")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="allow browser pages from ORIGIN to call the API (repeatable; default: none)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                       help="uvicorn's log level (default info)")

    evaluate = commands.add_parser("eval", parents=[store], help="metrics of the published index version",
                                   description="Print the evaluation metrics stored with the published version.")
    evaluate.add_argument("--index", dest="index_name", help="index name (default: the only index in the store)")
    evaluate.add_argument("--verify", action="store_true", help="also verify the checksums of the version's files")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")

    features = commands.add_parser(
        "eval-features", help="compare CLIP4Hashing, LSH and ITQ on given embedding matrices",
        description="Train CLIP4Hashing and the LSH/ITQ baselines on paired embedding matrices (.npy, row i of the "
                    "text matrix is a caption of row i of the video matrix, e.g. MSR-VTT CLIP features) and print "
                    "text->video and video->text R@1/5/10 and MdR per method and bit length next to the float cosine "
                    "ranking. Identical video rows count as one video with several captions. See docs/clip4hashing.md.")
    features.add_argument("--video", required=True, metavar="V.npy", help="evaluation video embeddings [N, D]")
    features.add_argument("--text", required=True, metavar="T.npy", help="evaluation caption embeddings [N, D]")
    features.add_argument("--train-video", metavar="TV.npy", help="training video embeddings (default: the evaluation pairs)")
    features.add_argument("--train-text", metavar="TT.npy", help="training caption embeddings, row-aligned with --train-video")
    features.add_argument("--bits", default="64,128,256,512,1024,2048", help="comma-separated code lengths")
    features.add_argument("--methods", default="clip4hashing,lsh,itq", help="comma-separated subset of clip4hashing,lsh,itq")
    features.add_argument("--ablations", action="store_true",
                          help="also score CLIP4Hashing with sign-at-zero bits, eval-set min-max and a plain cosine target")
    features.add_argument("--epochs", type=int, help="CLIP4Hashing training epochs (default from Clip4HashingTrainOptions)")
    features.add_argument("--batch-size", type=int, help="CLIP4Hashing pairs per step")
    features.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                          help="a Clip4HashingConfig field, e.g. hidden=1024 or c=0 (VALUE parsed as JSON); repeatable")
    features.add_argument("--device", default="auto", help="training device: auto, cpu, cuda, cuda:N")
    features.add_argument("--seed", type=int, default=0, help="random seed of training and baselines (default 0)")
    features.add_argument("--save-models", metavar="DIR", help="also save each CLIP4Hashing model as DIR/clip4hashing-<bits>b")
    features.add_argument("--json", action="store_true", help="print the full result as JSON")

    # A parent of its own: set_defaults below changes the shared argument objects of the parent it is given.
    demo = commands.add_parser("demo", parents=[store, _encoder_parent()], help="sample collection → index → train → searches",
                               description="Generate a sample collection and index it through the Prefect flow on a "
                                           "local Ray instance. Without CLIP weights (the default offline) a random "
                                           "CLIP (reelhash-tiny unless --clip-arch is given) catalogs it, DSMHN is "
                                           "trained on its labels (flow 'train_hasher') and the collection is "
                                           "re-indexed with the trained model, so text search is meaningful. Then "
                                           "example searches. See docs/training.md.")
    demo.add_argument("--dir", default="demo-data/sample", help="where to write the sample videos")
    demo.add_argument("--videos", type=bounded_int(8, 100_000), default=200, help="sample videos (default 200)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the sample collection (default 0)")
    demo.set_defaults(clip_arch=None)  # run_demo picks the architecture: tiny when the weights are random

    gc = commands.add_parser("gc", parents=[store], help="delete what no committed run or kept version needs",
                             description="Remove temporary files and staging directories left by killed runs, "
                                         "uncommitted run directories and, with --keep-versions, index versions "
                                         "older than the newest N (never CURRENT) and the code runs only they used. "
                                         "Takes the writers' locks: whatever a running writer holds is skipped.")
    gc.add_argument("--keep-versions", type=bounded_int(1), metavar="N",
                    help="keep the newest N versions of every index (default: keep all versions)")
    gc.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    gc.add_argument("--json", action="store_true", help="print the removed and skipped items as JSON")

    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="show tracebacks of errors (accepted anywhere on the command line)")
    return parser


def _resolve_index(layout, name: str | None) -> str:
    if name:
        return name
    names = layout.index_names()
    if len(names) == 1:
        return names[0]
    if not names:
        raise UsageError(f"no published index under {layout.root}; run 'reelhash index' first")
    raise UsageError(f"several indexes exist ({', '.join(names)}); choose one with --index")


def cmd_make_sample(args: argparse.Namespace) -> int:
    from pipeline.sample_collection import make_sample_collection

    manifest = make_sample_collection(args.directory, args.videos, args.seed, progress=not args.json)
    if args.json:
        print(json.dumps({"directory": str(Path(args.directory).resolve()), "videos": args.videos,
                          "manifest": str(manifest)}, indent=2))
    else:
        print(f"wrote {args.videos} videos and {manifest}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from hashing.bits import check_bits
    from pipeline.store import validate_name

    validate_name(args.collection, "collection")
    check_bits(args.bits)
    model_id = preflight_run(args.store, validate_name(args.index_name or args.collection, "index"), model=args.model,
                             refit=args.refit, encoder=_encoder_config(args), source=args.source)

    from flows.config import IndexRunConfig
    from flows.index_collection import index_collection
    from flows.services import start_run_services

    hide_console_tracebacks(args.debug)
    config = IndexRunConfig(
        source=args.source, collection=args.collection, index=args.index_name, store=args.store,
        encoder=_encoder_config(args), method=args.method, bits=args.bits, model=args.model,
        sampling={"mode": args.sampling, "clip_seconds": args.clip_seconds, "frames_per_clip": args.frames_per_clip},
        max_failure_rate=args.max_failure_rate,
        extract={"max_encoder_actors": args.encoder_actors, "unit_videos": args.unit_videos,
                 **({"encoder_cpus": args.encoder_cpus} if args.encoder_cpus is not None else {})},
        **_run_control(args),
    )
    if args.random_weights:
        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)
    prewarmed = start_run_services(config.ray, after_ray=prewarm_encoders(config, model_id))
    if prewarmed is not None:  # held until the flow returns: Ray stops actors that nobody holds
        config = config.model_copy(update={"extract": config.extract.model_copy(
            update={"prewarmed_pool": prewarmed[1]})})
    result = index_collection(config)
    del prewarmed
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_run_summary(result)
    return 0


def prewarm_encoders(config: IndexRunConfig, model_id: str | None) -> Callable[[], tuple[EncoderPool, str]] | None:
    """Where the run starts its own Ray and Prefect API (neither RAY_ADDRESS nor PREFECT_API_URL), a function that
    starts the run's encoder actors as soon as Ray is up — while Prefect's API is still starting, seconds before the
    flow would ask for them (docs/architecture.md, "Start-up"); the flow takes them over
    (``ExtractConfig.prewarmed_pool``). On a shared cluster the flow asks for them itself: actors started before it
    holds the index's lock would hold the cluster's CPUs while it waits. ``model_id``: the model the run will hash
    with (``preflight_run``), whose encoder the actors load; None: the run fits one with ``config.encoder``."""
    from flows.index_collection import run_spec
    from flows.services import temporary_prefect_api_needed
    from pipeline.extract import start_prewarmed_pool
    from pipeline.ray_runtime import cluster_address

    if cluster_address(config.ray) or not temporary_prefect_api_needed():
        return None
    encoder_config, _ = run_spec(config.model_copy(update={"model": model_id}))
    token = uuid.uuid4().hex[:8]
    return lambda: start_prewarmed_pool(encoder_config, config.extract, token)


def preflight_run(store: str | None, index: str, *, model: str | None, refit: bool, encoder: dict,
                  source: str | None) -> str | None:
    """Check before Prefect or Ray is imported what can be checked: the source exists, the model loads, and, when a
    model will be fitted (otherwise the run would decode everything, then fail), the encoder options ``encoder``
    (``check_encoder``: a pretrained tag's weights are downloaded now if they are not in the cache). Returns the
    model the run will hash with as things stand (``model``'s id, else the index's current one unless ``refit``),
    or None when it will fit one; the flow decides again under the index's lock."""
    from pipeline.publish import IndexNotFoundError, read_current_manifest
    from pipeline.store import StoreLayout

    from pipeline.catalog import source_exists

    if source is not None and not source_exists(source):
        raise UsageError(f"SOURCE {source} does not exist; give a directory, a glob or a manifest file")
    layout = StoreLayout.from_option(store)
    if model:
        from pipeline.models import load_model, resolve_model_id

        model_id = resolve_model_id(layout, model)
        load_model(layout, model_id)
        return model_id
    if not refit:
        try:
            # The run hashes with the index's own model: the encoder options are not used.
            return read_current_manifest(layout, index)[2]["model_id"]
        except IndexNotFoundError:
            pass
    check_encoder(encoder)
    return None


def print_run_summary(result: dict) -> None:
    counts = result["counts"]
    print(f"\nrun {result['run_id']}: {counts['files']} files, {counts['ok']} ok, {counts['failed']} failed; "
          f"decoded {counts['decoded']}, {counts['from_cache']} from cache; {counts['clips']} clips hashed")
    for warning in result.get("warnings", []):
        print(f"  warning: {warning}")
    for failure in result["failures"]:
        print(f"  failed: {failure['uri']}: {failure['error']}")
    print_metrics(result["metrics"])
    print_published(result["published"])
    print(f"report: {result['report_dir']}/report.md")


def print_metrics(metrics: dict, indent: str = "  ") -> None:
    for key, value in metrics.items():
        if key.endswith(("R@1", "R@10", "mAP@all")):
            print(f"{indent}{key:<32} {value}")


def print_published(published: dict | None) -> None:
    if published:
        state = "published" if published["published"] else "unchanged, still"
        print(f"index {state} as v{published['version']} ({', '.join(published['collections'])}): "
              f"{published['version_dir']}")


def parse_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def training_uses_encoder(method: str, options: dict) -> bool:
    """Whether a training run builds the open_clip encoder of the command line: CLIP4Hashing learns from its
    cached features; DSMHN only with a CLIP text input (``--set text_input=clip``) and no clip_text_encoder."""
    if method == "clip4hashing":
        return True
    return options.get("text_input", "words") != "words" and options.get("clip_text_encoder") is None


def cmd_train(args: argparse.Namespace) -> int:
    options = parse_options(args.options)
    if args.epochs is not None:
        options["epochs"] = args.epochs
    try:
        bits = [int(b) for b in args.bits.split(",") if b.strip()]
    except ValueError:
        raise UsageError(f"--bits expects comma-separated integers, got {args.bits!r}") from None
    if training_uses_encoder(args.method, options):
        check_encoder(_encoder_config(args))

    from flows.services import start_run_services
    from flows.train_hasher import train_hasher
    from pipeline.training.base import TrainRunConfig

    hide_console_tracebacks(args.debug)
    config = TrainRunConfig(
        method=args.method, collection=args.collection, store=args.store, bits=bits, model_prefix=args.model_prefix,
        encoder=_encoder_config(args), options=options, seed=args.seed,
        sampling={"mode": args.sampling, "clip_seconds": args.clip_seconds, "frames_per_clip": args.frames_per_clip},
    )
    start_run_services(config.ray)
    result = train_hasher(config)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        for model in result["models"]:
            print(f"model {model['model_id']} ({model['n_bits']} bits, {model['seconds']:.0f} s)")
            for key, value in model["metrics"].items():
                if isinstance(value, (int, float)):
                    print(f"  {key:<32} {value}")
        print(f"report: {result['report_dir']}/report.md")
        print("use a model with: reelhash index SOURCE --collection NAME --model MODEL_ID")
    return 0


def cmd_rehash(args: argparse.Namespace) -> int:
    from flows.rehash_index import RehashRunConfig, rehash_index

    from pipeline.rehash import plan_rehash
    from pipeline.store import StoreLayout

    hide_console_tracebacks(args.debug)
    # The index, the model and the cached features are checked before a flow run starts.
    plan_rehash(StoreLayout.from_option(args.store), args.index_name, args.model)
    result = rehash_index(RehashRunConfig(model=args.model, index=args.index_name, store=args.store,
                                          wait_seconds=args.wait, force_publish=args.force,
                                          quality_tolerance=args.quality_tolerance,
                                          quality_min_videos=args.quality_min_videos))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    for codes in result["codes"]:
        name = codes["collection"]
        print(f"{name}: {codes['videos']} videos, {codes['clips']} clips hashed from cached features (nothing decoded)")
        for key, value in result["metrics"][name].items():
            if key.endswith(("R@1", "R@10", "MdR")):
                print(f"  {key:<32} {value}")
        print(f"  report: {result['report_dirs'][name]}/report.md")
    published = result["published"]
    state = "published" if published["published"] else "unchanged, still"
    print(f"index {args.index_name} {state} as v{published['version']} (was v{result['plan']['from_version']}, "
          f"model {result['plan']['from_model_id']}): {published['version_dir']}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from pipeline.search import PublishedIndex, QueryHasher, search_response
    from pipeline.store import StoreLayout

    if bool(args.text) == bool(args.like):
        raise UsageError("give either a text query or --like PATH_OR_VIDEO_ID")
    layout = StoreLayout.from_option(args.store)
    index = PublishedIndex.open(layout, _resolve_index(layout, args.index_name))
    warnings: list[str] = []
    if args.like:
        codes = index.codes_of_video(args.like)
        if len(codes) == 0:
            if not Path(args.like).exists():
                raise UsageError(f"{args.like} is neither an indexed video_id nor an existing file")
            codes, like_warnings = QueryHasher.for_index(layout, index).video_query(args.like)
            warnings += like_warnings
    else:
        hasher = QueryHasher.for_index(layout, index)
        codes = hasher.text_codes([args.text])
        warnings += hasher.text_warnings(args.text)
    hits = index.search(codes, args.k, prefer_video=args.like)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(search_response(index, args.text or args.like, args.k, hits, warnings), indent=2))
    else:
        print_hits(hits, index)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pipeline.service.app import create_app
    from pipeline.service.config import ServiceConfig
    from pipeline.service.live_index import LiveIndex
    from pipeline.store import StoreLayout

    hide_console_tracebacks(args.debug)
    layout = StoreLayout.from_option(args.store)
    config = ServiceConfig(store=args.store, index=_resolve_index(layout, args.index_name), host=args.host,
                           port=args.port, token=os.environ.get("REELHASH_API_TOKEN"), poll_seconds=args.poll_seconds,
                           max_k=args.max_k, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                           max_upload_seconds=args.max_upload_seconds, cors_origins=args.cors_origin)
    if config.exposed and config.token is None:
        print(f"warning: listening on {config.host} without a token: anyone who can reach this port can search "
              "and read the media; set REELHASH_API_TOKEN", file=sys.stderr)
    live = LiveIndex(layout, config.index, poll_seconds=config.poll_seconds)
    served = live.served
    print(f"serving index {config.index} v{served.version} ({served.index.size} clips) on "
          f"http://{config.host}:{config.port}/ (API docs at /docs)", file=sys.stderr)
    live.start()
    try:
        uvicorn.run(create_app(config, live), host=config.host, port=config.port, log_level=args.log_level)
    finally:
        live.stop()
    return 0


def print_hits(hits, index) -> None:
    search = "exact" if index.exact else f"approximate: inverted lists, {index.manifest['search_index']['nprobe']} " \
                                         "scanned per shard"
    print(f"index {index.name} v{index.version} ({index.size} clips, {index.manifest['code_bits']} bits, {search})")
    print(f"{'rank':>4} {'dist':>4}  {'time range':<15} uri — caption")
    for hit in hits:
        span = f"{hit.t_start:6.1f}–{hit.t_end:.1f}s"
        print(f"{hit.rank:>4} {hit.distance:>4}  {span:<15} {hit.uri}" + (f" — {hit.caption}" if hit.caption else ""))


def cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.publish import read_current_manifest, verify_version
    from pipeline.store import StoreLayout

    layout = StoreLayout.from_option(args.store)
    name = _resolve_index(layout, args.index_name)
    version, version_dir, manifest = read_current_manifest(layout, name)
    problems = verify_version(version_dir, manifest) if args.verify else []
    out = {"index": name, "version": version, "model_id": manifest["model_id"], "code_bits": manifest["code_bits"],
           "counts": manifest["counts"], "metrics": manifest["metrics"], "verified": (not problems) if args.verify else None,
           "problems": problems}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"index {name} v{version}: model {manifest['model_id']}, {manifest['code_bits']} bits, "
              f"{manifest['counts']['videos']} videos, {manifest['counts']['clips']} clips")
        for collection_name, metrics in manifest["metrics"].items():
            print(f"  collection {collection_name}:")
            for key, value in metrics.items():
                print(f"    {key:<32} {value}")
        if args.verify:
            print("checksums: " + ("ok" if not problems else "; ".join(problems)))
    return 1 if problems else 0


def demo_encoder_options(args: argparse.Namespace) -> dict:
    """The encoder options the demo runs with, as far as they can be checked here: without weights it runs a random
    CLIP (flows/demo.py picks the architecture), with weights the given arch or the default."""
    options = {key: value for key, value in _encoder_config(args).items() if value is not None}
    if not (args.clip_pretrained or args.clip_checkpoint):
        options["allow_random_weights"] = True
    return options


def cmd_demo(args: argparse.Namespace) -> int:
    check_encoder(demo_encoder_options(args))

    from flows.demo import run_demo

    hide_console_tracebacks(args.debug)
    return run_demo(store=args.store, directory=args.dir, n_videos=args.videos, seed=args.seed,
                    encoder=_encoder_config(args))


def cmd_collection(args: argparse.Namespace) -> int:
    from pipeline import registry
    from pipeline.store import StoreLayout

    layout = StoreLayout.from_option(args.store)
    if args.collection_command == "add":
        index_name = args.index_name or args.name
        registry.add_collection(layout, args.name, args.source, manifest=args.manifest, index=index_name)
        if args.json:
            print(json.dumps({"collection": args.name, "source": args.source, "manifest": args.manifest,
                              "index": index_name, "store": str(layout.root)}, indent=2))
        else:
            print(f"registered collection {args.name} in index {index_name}; "
                  f"run 'reelhash nightly --index {index_name}' to index it")
    elif args.collection_command == "remove":
        registry.remove_collection(layout, args.name)
        if args.json:
            print(json.dumps({"removed": args.name, "store": str(layout.root)}, indent=2))
        else:
            print(f"removed collection {args.name}; indexes drop it at their next run")
    else:
        state = registry.read_registry(layout)
        rows = [{"collection": name, "source": registry.collection_source(entry),
                 "indexes": sorted(i for i, spec in state["indexes"].items() if name in spec["collections"])}
                for name, entry in sorted(state["collections"].items())]
        if args.json:
            print(json.dumps({"store": str(layout.root), "collections": rows}, indent=2))
            return 0
        if not rows:
            print(f"no collections registered under {layout.root}; add one with 'reelhash collection add NAME SOURCE'")
        for row in rows:
            print(f"{row['collection']:<24} {row['source']}  indexes: {', '.join(row['indexes']) or '-'}")
    return 0


def cmd_nightly(args: argparse.Namespace) -> int:
    from hashing.bits import check_bits
    from pipeline.store import validate_name

    check_bits(args.bits)
    preflight_run(args.store, validate_name(args.index_name, "index"), model=args.model, refit=args.refit,
                  encoder=_encoder_config(args), source=None)

    from flows.config import NightlyConfig
    from flows.nightly_reindex import nightly_reindex
    from flows.services import start_run_services

    hide_console_tracebacks(args.debug)
    config = NightlyConfig(index=args.index_name, store=args.store, encoder=_encoder_config(args), method=args.method,
                           bits=args.bits, model=args.model, max_failure_rate=args.max_failure_rate, **_run_control(args))
    start_run_services(config.ray)
    result = nightly_reindex(config)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    for name, item in result["collections"].items():
        counts = item["counts"]
        print(f"{name}: {counts['files']} files ({counts['new']} new, {counts['changed']} changed, "
              f"{counts['deleted']} deleted, {counts['unchanged']} unchanged), decoded {counts['decoded']}, "
              f"{counts['failed']} failed")
        for failure in item["failures"]:
            print(f"  failed: {failure['uri']}: {failure['error']}")
        for warning in item.get("warnings", []):
            print(f"  warning: {warning}")
        print_metrics(item["metrics"], indent="    ")
    print_published(result["published"])
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from flows.deployments import serve_nightly

    hide_console_tracebacks(args.debug)
    return serve_nightly(index=args.index_name, store=args.store, cron=args.cron, timezone=args.timezone,
                         run_once=args.run_once)


def cmd_rollback(args: argparse.Namespace) -> int:
    from pipeline.publish import rollback
    from pipeline.store import StoreLayout

    to_version = None
    if args.to_version:
        text = args.to_version.lstrip("v")
        if not text.isdigit() or int(text) < 1:
            raise UsageError(f"--to expects a version like v3, got {args.to_version!r}")
        to_version = int(text)
    before, after = rollback(StoreLayout.from_option(args.store), args.index_name, to_version)
    if args.json:
        print(json.dumps({"index": args.index_name, "from_version": before, "to_version": after}, indent=2))
    else:
        print(f"index {args.index_name}: CURRENT v{before} → v{after}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from pipeline.gc import collect_garbage
    from pipeline.store import StoreLayout

    layout = StoreLayout.from_option(args.store)
    report = collect_garbage(layout, keep_versions=args.keep_versions, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"store": str(layout.root), **report.as_dict()}, indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for item in report.removed:
        print(f"{verb} {item['path']} ({human_bytes(item['bytes'])}): {item['reason']}")
    for item in report.skipped:
        print(f"kept {item['path']}: {item['reason']}")
    print(f"{verb} {len(report.removed)} items, {human_bytes(report.freed_bytes)} under {layout.root}")
    return 0


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def cmd_eval_features(args: argparse.Namespace) -> int:
    from flows.eval_features import EvalFeaturesConfig, eval_features
    from hashing.methods.clip4hashing.comparison import format_table

    train = {"device": args.device, "seed": args.seed}
    train.update({key: value for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size))
                  if value is not None})
    config = EvalFeaturesConfig(
        video=args.video, text=args.text, train_video=args.train_video, train_text=args.train_text,
        bits=_comma_ints(args.bits, "--bits"), methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        ablations=args.ablations, clip4hashing=parse_options(args.options), train=train, save_dir=args.save_models,
    )
    log = (lambda message: print(message, file=sys.stderr)) if args.json else print
    result = eval_features(config, log=log, progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print()
        print(format_table(result))
        print(f"\nties: {result['tie_policy']}")
        for warning in result["warnings"]:
            print(warning)
    return 0


def _comma_ints(text: str, option: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{option} expects comma-separated integers, got {text!r}") from None


COMMANDS = {"make-sample": cmd_make_sample, "index": cmd_index, "train": cmd_train, "rehash": cmd_rehash,
            "search": cmd_search, "eval": cmd_eval, "demo": cmd_demo, "collection": cmd_collection,
            "nightly": cmd_nightly, "schedule": cmd_schedule, "rollback": cmd_rollback,
            "eval-features": cmd_eval_features, "gc": cmd_gc, "serve": cmd_serve}


def one_line(message: str) -> str:
    """An error message as one line (multi-line advice joined), for stderr and schedulers' logs."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip()) or "unknown error"


def exit_status_of(error: BaseException) -> int:
    """The exit status of an error escaping a command (the table in pipeline/errors.py)."""
    if isinstance(error, ReelhashError):
        return error.exit_code
    usage_kinds = []
    # Matched by name only where the defining module is already loaded: importing it here would cost seconds.
    for module_name, class_name in (("hashing.encoders.weights", "WeightsUnavailableError"),
                                    ("hashing.hashers.storage", "ModelLoadError"),
                                    ("pipeline.publish", "IndexNotFoundError"),
                                    ("pipeline.rehash", "MissingFeaturesError"),
                                    ("pipeline.registry", "RegistryError"),
                                    ("pydantic", "ValidationError")):
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, class_name):
            usage_kinds.append(getattr(module, class_name))
    # Plain ValueError / FileNotFoundError come from checking what the user gave (values, paths, files).
    if isinstance(error, (ValueError, FileNotFoundError, *usage_kinds)):
        return EXIT_USAGE
    return EXIT_RUN_FAILED


def error_message(error: BaseException) -> str:
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(error, pydantic.ValidationError):
        problems = [f"{'.'.join(str(p) for p in item['loc']) or 'value'}: {item['msg']}" for item in error.errors()]
        return one_line("invalid settings: " + "; ".join(problems))
    text = one_line(str(error))
    if exit_status_of(error) == EXIT_RUN_FAILED and not isinstance(error, ReelhashError):
        text = f"{text} ({type(error).__name__}; run with --debug for the traceback)"
    return text


def main(argv: list[str] | None = None) -> int:
    prepare_environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    args = build_parser().parse_args(argv)
    args.debug = debug
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # every failure becomes one line and an exit status; --debug shows the traceback
        if debug:
            traceback.print_exc()
        print(f"error: {error_message(error)}", file=sys.stderr)
        return exit_status_of(error)


def run() -> int:
    """The ``reelhash`` command: ``main``, then what makes the process exit promptly. Tests call ``main``: it leaves
    the process (their shared Ray instance among it) as it found it."""
    try:
        return main()
    finally:
        prepare_exit()


def prepare_exit() -> None:
    """Cut the seconds a finished command spends exiting (docs/architecture.md, "Start-up"): Ray is shut down here,
    because its own exit hook first sleeps half a second for worker log lines this CLI does not forward; and the
    objects of the ~3,000 imported modules are frozen, so the interpreter's last garbage collections skip them
    (about a second of an index run's exit, measured). Prefect's log and event queues still drain after this."""
    ray = sys.modules.get("ray")  # only a command that used Ray has imported it
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    gc.freeze()


if __name__ == "__main__":
    sys.exit(run())
