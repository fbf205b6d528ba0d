"""Switching the served version (pipeline/service/live_index.py), alone and under concurrent queries."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from served_index import INDEX, make_served_store, running_service, service_config

from pipeline.publish import rollback, set_current
from pipeline.service.live_index import LiveIndex


@pytest.fixture
def store(tmp_path):
    return make_served_store(tmp_path)


def test_refresh_switches_to_a_new_version_and_keeps_the_loaded_encoder(store):
    live = LiveIndex(store.layout, INDEX, poll_seconds=0)
    first = live.served
    assert live.refresh() is False  # nothing new
    assert store.publish("run-2", ["first.mp4"]) == 2
    assert live.refresh() is True
    assert live.served.version == 2 and live.served.index.size < first.index.size
    assert live.served.hasher is first.hasher  # same model: the encoder is not loaded again
    assert set(live.served.media) == {store.video_ids["first.mp4"]}  # media only of the served version's videos
    assert first.version == 1 and first.index.size > 0  # a request holding the old version still has all of it


def test_a_version_that_cannot_be_loaded_leaves_the_old_one_serving(store):
    live = LiveIndex(store.layout, INDEX, poll_seconds=0)
    assert store.publish("run-2", ["second.mp4"]) == 2
    broken = store.layout.index_version_dir(INDEX, 2) / "shard-00000.faissbin"
    broken.write_bytes(b"garbage")
    assert live.refresh() is False
    assert live.served.version == 1
    assert "corrupt" in live.refresh_error
    set_current(store.layout, INDEX, 1)
    assert live.refresh() is False and live.refresh_error is None


def test_the_watcher_follows_publish_and_rollback(store):
    live = LiveIndex(store.layout, INDEX, poll_seconds=0.05)
    live.start()
    try:
        store.publish("run-2", ["first.mp4", "second.mp4"])
        wait_for(lambda: live.served.version == 2)
        rollback(store.layout, INDEX, 1)
        wait_for(lambda: live.served.version == 1)
    finally:
        live.stop()
    assert live.switches == 2


def wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the served version did not change in time"
        time.sleep(0.02)


def test_queries_during_publishes_and_rollbacks_all_succeed_from_one_version(store):
    """A bounded load test: 4 clients query for ~6 s while versions are published and rolled back."""
    store.publish("run-2", ["first.mp4"])
    set_current(store.layout, INDEX, 1)
    sizes = {1: 3, 2: 1}  # videos per version: a response must match the version it names
    live = LiveIndex(store.layout, INDEX, poll_seconds=0.05)
    live.start()
    responses, failures, stop = [], [], threading.Event()
    with running_service(service_config(store), live) as url:
        def client() -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                while not stop.is_set():
                    try:
                        reply = http.get("/api/search", params={"q": "a red square", "k": 5})
                        body = reply.json()
                        responses.append((reply.status_code, reply.headers.get("X-Reelhash-Version"),
                                          body.get("version"), len(body.get("results", []))))
                    except Exception as error:
                        failures.append(repr(error))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for target in (2, 1, 2, 1, 2):
                time.sleep(1.0)
                set_current(store.layout, INDEX, target)  # what publish and rollback do last
            time.sleep(1.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            live.stop()
    assert not failures
    assert len(responses) > 20
    assert all(status == 200 for status, *_ in responses)
    assert all(header == str(version) and found == sizes[version] for _, header, version, found in responses)
    assert {version for _, _, version, _ in responses} == {1, 2}  # both versions were served
