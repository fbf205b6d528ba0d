"""Tests for flows/cli.py, run in-process: parsing, help, and the commands that need no Ray or Prefect."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import COMMANDS, EPHEMERAL_API_STARTUP_TIMEOUT_S, _encoder_config, build_parser, main, prepare_environment
from hashing.bits import codes_to_arrow
from pipeline.codes import code_schema
from pipeline.publish import CollectionCodes, publish_index, with_catalog_columns
from pipeline.store import StoreLayout

SUBCOMMAND_OPTIONS = {
    "make-sample": ["DIR", "--videos", "--seed", "--store", "--json"],
    "index": [
        "SOURCE", "--collection", "--index", "--method", "--bits", "--model", "--sampling", "--clip-seconds",
        "--frames-per-clip", "--max-failure-rate", "--encoder-actors", "--encoder-cpus", "--json", "--store", "--clip-arch",
        "--clip-pretrained", "--clip-checkpoint", "--random-weights", "--device", "--precision", "--cpu-streams",
    ],
    "search": ["text", "--like", "--index", "--k", "--json", "--store"],
    "eval": ["--index", "--verify", "--json", "--store"],
    "demo": ["--dir", "--videos", "--seed", "--store", "--clip-arch", "--random-weights"],
    "collection": ["ACTION", "add", "list", "remove", "--store"],
    "collection add": ["NAME", "SOURCE", "--manifest", "--index", "--json", "--store"],
    "collection list": ["--json", "--store"],
    "collection remove": ["NAME", "--json", "--store"],
    "nightly": ["--index", "--method", "--bits", "--model", "--max-failure-rate", "--refit", "--force",
                "--quality-tolerance", "--wait", "--json", "--store", "--clip-arch", "--random-weights"],
    "schedule": ["--index", "--cron", "--timezone", "--run-once", "--store"],
    "rollback": ["--index", "--to", "--json", "--store"],
    "train": ["--method", "--collection", "--bits", "--model-prefix", "--epochs", "--set", "--sampling",
              "--clip-seconds", "--frames-per-clip", "--seed", "--json", "--store", "--clip-arch"],
    "rehash": ["--model", "--index", "--wait", "--force", "--quality-tolerance", "--json", "--store"],
    "eval-features": ["--video", "--text", "--train-video", "--train-text", "--bits", "--methods", "--ablations",
                      "--epochs", "--batch-size", "--set", "--device", "--seed", "--save-models", "--json"],
    "gc": ["--keep-versions", "--dry-run", "--json", "--store"],
    "serve": ["--index", "--host", "--port", "--poll-seconds", "--max-k", "--max-upload-mb", "--max-upload-seconds",
              "--cors-origin", "--log-level", "--store", "REELHASH_API_TOKEN"],
}


def test_prepare_environment_gives_the_ephemeral_api_time_to_migrate_but_keeps_user_settings(monkeypatch):
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "true")
    prepare_environment()
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == str(EPHEMERAL_API_STARTUP_TIMEOUT_S)
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"  # a user's own choice wins
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "7")
    prepare_environment()
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "7"


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``reelhash argv`` as the console script would give them."""
    try:
        status = main(argv)
    except SystemExit as exit_:
        if isinstance(exit_.code, str):  # Python prints the message to stderr and exits with 1
            print(exit_.code, file=sys.stderr)
            status = 1
        else:
            status = exit_.code or 0
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ---------------------------------------------------------------- parsing and help


@pytest.mark.parametrize("command", sorted(SUBCOMMAND_OPTIONS))
def test_help_of_every_subcommand(command, capsys):
    status, out, _ = run_cli(command.split() + ["--help"], capsys)
    assert status == 0
    assert f"usage: reelhash {command}" in out
    for option in SUBCOMMAND_OPTIONS[command]:
        assert option in out, f"{command} --help does not mention {option}"


def test_every_command_is_covered_by_the_help_test():
    assert set(COMMANDS) <= set(SUBCOMMAND_OPTIONS)


def _all_actions(parser, path=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_actions(sub, path + (name,))
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_and_argument_has_help_text():
    missing = [f"{' '.join(path)} {action.option_strings or action.dest}" for path, action in _all_actions(build_parser())
               if not action.help]
    assert missing == []


def test_top_level_help_lists_the_subcommands(capsys):
    status, out, _ = run_cli(["--help"], capsys)
    assert status == 0
    for command in COMMANDS:
        assert command in out


def test_a_subcommand_is_required(capsys):
    status, _, err = run_cli([], capsys)
    assert status == 2 and "COMMAND" in err


def test_index_arguments_and_defaults():
    args = build_parser().parse_args(["index", "videos/", "--collection", "news"])
    assert (args.command, args.source, args.collection, args.index_name) == ("index", "videos/", "news", None)
    assert (args.method, args.bits, args.sampling, args.clip_seconds, args.frames_per_clip) == ("itq", 64, "uniform", 4.0, 8)
    assert (args.max_failure_rate, args.encoder_actors, args.json, args.store) == (0.5, None, False, None)
    assert args.unit_videos == 200 and args.encoder_cpus is None  # ExtractConfig's default
    assert _encoder_config(args) == {"arch": "ViT-B-32", "pretrained": None, "checkpoint_path": None,
                                     "allow_random_weights": False, "device": "auto", "precision": "auto",
                                     "cpu_streams": None}

    args = build_parser().parse_args(
        ["index", "m.parquet", "--collection", "c", "--index", "i", "--method", "lsh", "--bits", "128",
         "--sampling", "keyframe", "--clip-seconds", "2.5", "--frames-per-clip", "4", "--clip-arch", "reelhash-tiny",
         "--random-weights", "--device", "cpu", "--precision", "fp32", "--store", "/tmp/s", "--json",
         "--encoder-cpus", "2", "--cpu-streams", "1"]
    )
    assert (args.index_name, args.method, args.bits, args.sampling, args.clip_seconds) == ("i", "lsh", 128, "keyframe", 2.5)
    assert args.store == "/tmp/s" and args.json and args.encoder_cpus == 2.0
    assert _encoder_config(args) == {"arch": "reelhash-tiny", "pretrained": None, "checkpoint_path": None,
                                     "allow_random_weights": True, "device": "cpu", "precision": "fp32",
                                     "cpu_streams": 1}


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["index", "s"], "--collection"),
        (["index", "s", "--collection", "c", "--method", "pca"], "invalid choice"),
        (["index", "s", "--collection", "c", "--bits", "many"], "invalid int value"),
        (["index", "s", "--collection", "c", "--precision", "int8"], "invalid choice"),
        (["index", "s", "--collection", "c", "--encoder-cpus", "0"], "--encoder-cpus"),
        (["index", "s", "--collection", "c", "--cpu-streams", "0"], "--cpu-streams"),
        (["index", "s", "--collection", "c", "--clip-pretrained", "openai", "--clip-checkpoint", "x.pt"],
         "not allowed with argument"),
        (["search", "cats", "--k", "ten"], "invalid int value"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--max-k", "0"], "--max-k"),
    ],
)
def test_bad_arguments_exit_2_with_usage(argv, fragment, capsys):
    status, _, err = run_cli(argv, capsys)
    assert status == 2
    assert "usage: reelhash" in err and fragment in err


def test_search_arguments():
    args = build_parser().parse_args(["search", "a red ball", "--k", "3", "--index", "news"])
    assert (args.text, args.like, args.k, args.index_name, args.json) == ("a red ball", None, 3, "news", False)
    args = build_parser().parse_args(["search", "--like", "clip.mp4"])
    assert (args.text, args.like, args.k) == (None, "clip.mp4", 10)


# ---------------------------------------------------------------- errors a user meets first


@pytest.mark.parametrize("argv", [["search"], ["search", "cats", "--like", "v1"]])
def test_search_needs_exactly_one_of_text_and_like(argv, tmp_path, capsys):
    status, out, err = run_cli(argv + ["--store", str(tmp_path)], capsys)
    assert status != 0 and out == ""
    assert "give either a text query or --like" in err


@pytest.mark.parametrize("argv", [["eval"], ["search", "cats"], ["search", "--like", "v1"], ["serve"]])
def test_empty_store_says_to_index_first(argv, tmp_path, capsys):
    status, out, err = run_cli(argv + ["--store", str(tmp_path)], capsys)
    assert status != 0 and out == ""
    assert "no published index" in err and str(tmp_path) in err and "reelhash index" in err


@pytest.mark.parametrize("argv", [["eval", "--index", "news"], ["search", "cats", "--index", "news"],
                                  ["serve", "--index", "news"]])
def test_unknown_index_says_what_to_run(argv, tmp_path, capsys):
    status, out, err = run_cli(argv + ["--store", str(tmp_path)], capsys)
    assert status == 2 and out == ""
    assert err.startswith("error: index 'news' has no published version")
    assert "reelhash index SOURCE --collection NAME --index news" in err


def test_store_from_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REELHASH_STORE", str(tmp_path / "env-store"))
    status, _, err = run_cli(["eval"], capsys)
    assert status != 0 and str(tmp_path / "env-store") in err


# ---------------------------------------------------------------- eval and search on a published index


def _publish(layout: StoreLayout, name: str) -> None:
    clips = [("vid-a", 0, 0x0000), ("vid-a", 1, 0x000F), ("vid-b", 0, 0x00FF), ("vid-c", 0, 0xFFFF)]
    codes = pa.table(
        {
            "video_id": [c[0] for c in clips],
            "clip_idx": pa.array([c[1] for c in clips], pa.int32()),
            "t_start": [4.0 * c[1] for c in clips],
            "t_end": [4.0 * c[1] + 4.0 for c in clips],
            "code": codes_to_arrow(np.array([[c[2] >> 8, c[2] & 0xFF] for c in clips], np.uint8)),
        },
        schema=code_schema(16),
    )
    catalog = pa.table(
        {
            "video_id": ["vid-a", "vid-b", "vid-c"],
            "uri": ["a.mp4", "b.mp4", "c.mp4"],
            "caption": ["a cat", "a dog", None],
            "labels": pa.array([["cat"], ["dog"], None], pa.list_(pa.string())),
        }
    )
    publish_index(
        layout, name, model_id="model-x", code_bits=16,
        collections=[CollectionCodes("col", "run-1", with_catalog_columns(codes, catalog))],
        metrics={"col": {"text_to_video.hash.R@1": 42.0}}, model_info={}, shard_rows=2,
    )


def test_eval_prints_the_published_metrics(tmp_path, capsys):
    _publish(StoreLayout(tmp_path), "news")
    status, out, _ = run_cli(["eval", "--store", str(tmp_path)], capsys)
    assert status == 0
    assert "index news v1: model model-x, 16 bits, 3 videos, 4 clips" in out
    assert "text_to_video.hash.R@1" in out and "42.0" in out

    status, out, _ = run_cli(["eval", "--store", str(tmp_path), "--json", "--verify"], capsys)
    report = json.loads(out)
    assert status == 0
    assert (report["index"], report["version"], report["verified"], report["problems"]) == ("news", 1, True, [])
    assert report["counts"] == {"clips": 4, "videos": 3, "shards": 2}


def test_eval_verify_fails_on_a_tampered_version(tmp_path, capsys):
    layout = StoreLayout(tmp_path)
    _publish(layout, "news")
    ids_file = layout.index_version_dir("news", 1) / "shard-00001.ids.parquet"
    pq.write_table(pq.read_table(ids_file).slice(0, 1), ids_file)
    status, out, _ = run_cli(["eval", "--store", str(tmp_path), "--verify"], capsys)
    assert status == 1
    assert "checksums: checksum mismatch" in out and "shard-00001.ids.parquet" in out


def test_several_indexes_need_index_option(tmp_path, capsys):
    layout = StoreLayout(tmp_path)
    _publish(layout, "news")
    _publish(layout, "sport")
    status, _, err = run_cli(["eval", "--store", str(tmp_path)], capsys)
    assert status != 0 and "several indexes exist (news, sport)" in err and "--index" in err
    status, out, _ = run_cli(["eval", "--store", str(tmp_path), "--index", "sport"], capsys)
    assert status == 0 and "index sport v1" in out


def test_search_like_an_indexed_video(tmp_path, capsys):
    _publish(StoreLayout(tmp_path), "news")
    status, out, _ = run_cli(["search", "--like", "vid-b", "--k", "2", "--store", str(tmp_path), "--json"], capsys)
    assert status == 0
    result = json.loads(out)
    assert (result["index"], result["version"], result["query"]) == ("news", 1, "vid-b")
    assert [(r["rank"], r["video_id"], r["distance"]) for r in result["results"]] == [(1, "vid-b", 0), (2, "vid-a", 4)]
    assert result["results"][1]["t_start"] == 4.0 and result["results"][1]["uri"] == "a.mp4"

    status, out, _ = run_cli(["search", "--like", "vid-b", "--store", str(tmp_path)], capsys)
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "index news v1 (4 clips, 16 bits, exact)"
    assert lines[2].split()[:2] == ["1", "0"] and "b.mp4 — a dog" in lines[2]
    assert len(lines) == 2 + 3  # header lines + every video once


def test_search_like_neither_video_id_nor_file(tmp_path, capsys):
    _publish(StoreLayout(tmp_path), "news")
    status, out, err = run_cli(["search", "--like", str(tmp_path / "nope.mp4"), "--store", str(tmp_path)], capsys)
    assert status != 0 and out == ""
    assert "neither an indexed video_id nor an existing file" in err


def test_make_sample_writes_a_collection(tmp_path, capsys):
    status, out, _ = run_cli(["make-sample", str(tmp_path / "sample"), "--videos", "2", "--seed", "1"], capsys)
    assert status == 0
    manifest = tmp_path / "sample" / "manifest.parquet"
    assert f"wrote 2 videos and {manifest}" in out
    table = pq.read_table(manifest)
    assert table.num_rows == 2 and "uri" in table.column_names
    assert all((tmp_path / "sample" / uri).is_file() for uri in table["uri"].to_pylist())


# ---------------------------------------------------------------- sharp edges: bounds, exit statuses, one-line errors


@pytest.mark.parametrize("k", ["0", "-3", "10001"])
def test_search_k_out_of_range_is_a_one_line_usage_error(k, tmp_path, capsys):
    _publish(StoreLayout(tmp_path), "news")
    status, out, err = run_cli(["search", "--like", "vid-b", "--k", k, "--store", str(tmp_path)], capsys)
    assert status == 2 and out == ""
    assert f"argument --k: must be 1…10000, got {int(k)}" in err
    assert "Traceback" not in err


def test_search_k_larger_than_the_index_returns_every_video(tmp_path, capsys):
    _publish(StoreLayout(tmp_path), "news")
    status, out, _ = run_cli(["search", "--like", "vid-b", "--k", "10000", "--store", str(tmp_path), "--json"], capsys)
    result = json.loads(out)
    assert status == 0
    assert sorted(hit["video_id"] for hit in result["results"]) == ["vid-a", "vid-b", "vid-c"]
    assert result["warnings"] == [] and result["model_id"] == "model-x"


@pytest.mark.parametrize("placement", ["parent", "sub-command"])
def test_collection_list_reads_the_store_given_before_or_after_the_action(placement, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default store ./reelhash-data must stay untouched
    store = tmp_path / "chosen"
    run_cli(["collection", "add", "news", str(tmp_path), "--store", str(store)], capsys)
    argv = (["collection", "--store", str(store), "list", "--json"] if placement == "parent"
            else ["collection", "list", "--store", str(store), "--json"])
    status, out, _ = run_cli(argv, capsys)
    listing = json.loads(out)
    assert status == 0 and listing["store"] == str(store)
    assert listing["collections"] == [{"collection": "news", "source": str(tmp_path), "indexes": ["news"]}]
    assert not (tmp_path / "reelhash-data").exists()


def test_rollback_json_names_both_versions(tmp_path, capsys):
    layout = StoreLayout(tmp_path)
    _publish(layout, "news")
    publish_index(layout, "news", model_id="model-y", code_bits=16, collections=[], metrics={}, model_info={})
    status, out, _ = run_cli(["rollback", "--index", "news", "--store", str(tmp_path), "--json"], capsys)
    assert status == 0 and json.loads(out) == {"index": "news", "from_version": 2, "to_version": 1}
    status, _, err = run_cli(["rollback", "--index", "news", "--to", "v0", "--store", str(tmp_path)], capsys)
    assert status == 2 and err.strip() == "error: --to expects a version like v3, got 'v0'"


def test_missing_weights_fail_before_prefect_or_ray_start(tmp_path, capsys):
    (tmp_path / "media").mkdir()
    status, out, err = run_cli(["index", str(tmp_path / "media"), "--collection", "c", "--clip-arch", "reelhash-tiny",
                                "--store", str(tmp_path / "store")], capsys)
    assert status == 2 and out == ""
    assert err.startswith("error: no weights configured for open_clip arch 'reelhash-tiny'")
    assert len(err.strip().splitlines()) == 1 and "--random-weights" in err
    assert not (tmp_path / "store").exists()  # nothing started, nothing written


def test_missing_source_and_unknown_model_fail_before_start_up(tmp_path, capsys):
    status, _, err = run_cli(["index", str(tmp_path / "nope"), "--collection", "c", "--random-weights",
                              "--store", str(tmp_path)], capsys)
    assert status == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "media").mkdir()
    status, _, err = run_cli(["index", str(tmp_path / "media"), "--collection", "c", "--model", "nope-64b",
                              "--store", str(tmp_path)], capsys)
    assert status == 2 and "model 'nope-64b' not found" in err and len(err.strip().splitlines()) == 1


def test_exit_status_table():
    from flows.cli import exit_status_of
    from pipeline.errors import CorruptStoreError, IndexBusyError, QualityGateError, RunFailedError, UsageError
    from pipeline.publish import IndexNotFoundError

    assert exit_status_of(RunFailedError("x")) == 1
    assert exit_status_of(CorruptStoreError("x")) == 1
    assert exit_status_of(UsageError("x")) == 2
    assert exit_status_of(IndexNotFoundError("x")) == 2
    assert exit_status_of(IndexBusyError("x")) == 3
    assert exit_status_of(QualityGateError("x")) == 4
    assert exit_status_of(RuntimeError("x")) == 1
    assert exit_status_of(KeyError("x")) == 1


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_bytes(path) -> None:
    data = bytearray(path.read_bytes())
    data[-20:-12] = bytes(b ^ 0xFF for b in data[-20:-12])
    path.write_bytes(bytes(data))


def _drop_key(path, key: str) -> None:
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != key}))


@pytest.mark.parametrize("damage, file_name, fragment", [
    (_truncate, "shard-00000.faissbin", "shard-00000.faissbin is corrupt (checksum mismatch)"),
    (_flip_last_bytes, "shard-00001.ids.parquet", "shard-00001.ids.parquet is corrupt (checksum mismatch)"),
    (lambda path: path.unlink(), "shard-00001.faissbin", "shard-00001.faissbin is missing"),
    (lambda path: path.write_text("{ not json"), "manifest.json", "corrupt JSON file"),
    (lambda path: _drop_key(path, "shards"), "manifest.json", "manifest.json is corrupt: it lacks shards"),
])
def test_a_damaged_version_is_a_one_line_error_naming_the_file_and_rollback(tmp_path, capsys, damage, file_name,
                                                                             fragment):
    layout = StoreLayout(tmp_path)
    _publish(layout, "news")
    damage(layout.index_version_dir("news", 1) / file_name)
    status, out, err = run_cli(["search", "--like", "vid-a", "--store", str(tmp_path)], capsys)
    assert status == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert fragment in err and "reelhash rollback --index news" in err


def test_debug_shows_the_traceback(tmp_path, capsys):
    layout = StoreLayout(tmp_path)
    _publish(layout, "news")
    _drop_key(layout.index_version_dir("news", 1) / "manifest.json", "shards")
    status, _, err = run_cli(["search", "--like", "vid-a", "--store", str(tmp_path), "--debug"], capsys)
    assert status == 1 and "Traceback (most recent call last)" in err and "CorruptStoreError" in err


def _reelhash(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *argv], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2], **kwargs)


def test_real_process_usage_error_is_one_line_with_status_2(tmp_path):
    done = _reelhash("search", "cats", "--k", "0", "--store", str(tmp_path))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1].endswith("must be 1…10000, got 0")


def test_make_sample_with_worker_processes_ends_without_a_traceback(tmp_path):
    # 16 videos or more are written by worker processes; they must end quietly, not be signalled in their own exit.
    done = subprocess.run([sys.executable, "-m", "flows.cli", "make-sample", str(tmp_path / "s"), "--videos", "16"],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and "wrote 16 videos" in done.stdout
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_ctrl_c_exits_130_without_a_traceback(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "make-sample", str(tmp_path / "s"), "--videos",
                                "5000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 60
    videos = tmp_path / "s" / "videos"
    while not (videos.exists() and any(videos.iterdir())) and time.monotonic() < deadline:  # workers are writing
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
    # The workers were stopped, not left to finish, and removed the files they were writing.
    assert not list(videos.glob(".tmp-*"))


def test_trivial_commands_import_no_heavy_library(tmp_path):
    code = ("import sys, flows.cli; flows.cli.main(['collection', '--store', sys.argv[1], 'list']); "
            "print(sorted(m for m in ('torch', 'open_clip', 'ray', 'prefect') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "[]"


def test_gc_prints_what_it_frees(tmp_path, capsys):
    layout = StoreLayout(tmp_path)
    _publish(layout, "news")
    publish_index(layout, "news", model_id="model-y", code_bits=16, collections=[], metrics={}, model_info={})
    (layout.index_dir("news") / ".tmp-v7-dead").mkdir()
    status, out, _ = run_cli(["gc", "--store", str(tmp_path), "--keep-versions", "1", "--dry-run", "--json"], capsys)
    report = json.loads(out)
    assert status == 0 and report["dry_run"] is True
    assert {item["path"] for item in report["removed"]} == {"index/news/v1", "index/news/.tmp-v7-dead"}
    assert (layout.index_version_dir("news", 1)).exists()
    status, out, _ = run_cli(["gc", "--store", str(tmp_path), "--keep-versions", "1"], capsys)
    assert status == 0 and "removed index/news/v1" in out and "removed 2 items" in out
    assert not layout.index_version_dir("news", 1).exists()


class FakeRay:
    def __init__(self, initialized: bool) -> None:
        self.initialized, self.shutdowns = initialized, 0

    def is_initialized(self) -> bool:
        return self.initialized

    def shutdown(self) -> None:
        self.shutdowns += 1


@pytest.mark.parametrize("initialized", [True, False])
def test_prepare_exit_shuts_ray_down_only_when_the_command_started_it_and_freezes_the_heap(monkeypatch, initialized):
    import gc

    from flows import cli

    fake = FakeRay(initialized)
    monkeypatch.setitem(sys.modules, "ray", fake)
    try:
        cli.prepare_exit()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert fake.shutdowns == (1 if initialized else 0)


def test_the_reelhash_command_runs_main_then_prepares_the_exit(monkeypatch):
    from flows import cli

    order = []
    monkeypatch.setattr(cli, "main", lambda: order.append("main") or 3)
    monkeypatch.setattr(cli, "prepare_exit", lambda: order.append("exit"))
    assert cli.run() == 3 and order == ["main", "exit"]


def test_encoders_are_prewarmed_only_where_the_run_starts_its_own_ray_and_prefect_api(monkeypatch, tmp_path):
    from flows import cli, services
    from flows.config import IndexRunConfig

    config = IndexRunConfig(source=str(tmp_path), collection="c", store=str(tmp_path / "store"),
                            encoder={"allow_random_weights": True})
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "temporary_prefect_api_needed", lambda: True)
    assert callable(cli.prewarm_encoders(config, None))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert cli.prewarm_encoders(config, None) is None
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setattr(services, "temporary_prefect_api_needed", lambda: False)
    assert cli.prewarm_encoders(config, None) is None


def test_preflight_names_the_model_a_run_will_hash_with(tmp_path, monkeypatch):
    from flows import cli

    monkeypatch.setattr(cli, "check_encoder", lambda encoder: None)
    _publish(StoreLayout(tmp_path), "news")
    run = {"encoder": {}, "source": None, "model": None}
    assert cli.preflight_run(str(tmp_path), "news", refit=False, **run) == "model-x"  # the index's current model
    assert cli.preflight_run(str(tmp_path), "news", refit=True, **run) is None  # --refit: a model is fitted
    assert cli.preflight_run(str(tmp_path), "other", refit=False, **run) is None  # a new index: fitted
