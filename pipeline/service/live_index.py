"""The published version a search service answers from, swapped for a new one without a pause.

A request takes one ``ServedVersion`` (a single attribute read) and uses only it, so it is answered from exactly
one version even if ``CURRENT`` moves while it runs. A watcher thread polls ``CURRENT`` (one small read) and,
when it names another version, loads that version completely — shards, id tables, the media of its videos, the
query encoder (kept when the model is the same) — before swapping the reference. A version that fails to load
leaves the old one serving and is reported by ``/api/index`` (docs/serving.md).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from pipeline.catalog import read_catalog
from pipeline.publish import current_version, read_current_manifest
from pipeline.search import PublishedIndex, QueryHasher
from pipeline.store import StoreLayout

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedVersion:
    """Everything a request needs from one published version."""

    index: PublishedIndex
    hasher: QueryHasher
    media: dict[str, str]  # video_id → the media file's path or object URI, for the videos of this version only
    loaded_at: float = field(default_factory=time.time)

    @property
    def version(self) -> int:
        return self.index.version

    @property
    def model_key(self) -> tuple[str, str | None]:
        manifest = self.index.manifest
        return manifest["model_id"], manifest.get("model", {}).get("digest")


def media_of_version(layout: StoreLayout, index: PublishedIndex) -> dict[str, str]:
    """video_id → media location, from the catalogs of the version's collections, for its videos only."""
    wanted = {video for table in index.ids for video in table["video_id"].unique().to_pylist()}
    media: dict[str, str] = {}
    for collection in index.manifest.get("collections", {}):
        catalog = read_catalog(layout, collection)
        if catalog is None:
            continue
        for video_id, path in zip(catalog["video_id"].to_pylist(), catalog["path"].to_pylist()):
            if video_id in wanted and path:
                media[video_id] = path
    return media


def load_version(layout: StoreLayout, name: str, reuse: ServedVersion | None = None) -> ServedVersion:
    """Load the version ``CURRENT`` names; the encoder of ``reuse`` is kept when the model is the same."""
    version, version_dir, manifest = read_current_manifest(layout, name)
    index = PublishedIndex(name, version, version_dir, manifest)
    model_key = (manifest["model_id"], manifest.get("model", {}).get("digest"))
    if reuse is not None and reuse.model_key == model_key:
        hasher = reuse.hasher
    else:
        hasher = QueryHasher.for_index(layout, index)
        hasher.encoder
    return ServedVersion(index=index, hasher=hasher, media=media_of_version(layout, index))


class LiveIndex:
    """The served version of one index, refreshed from ``CURRENT`` every ``poll_seconds``."""

    def __init__(self, layout: StoreLayout, name: str, poll_seconds: float = 2.0):
        self.layout, self.name, self.poll_seconds = layout, name, poll_seconds
        self.refresh_error: str | None = None
        self.switches = 0
        self._served = load_version(layout, name)
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def served(self) -> ServedVersion:
        return self._served

    def refresh(self) -> bool:
        """Load and switch to the version ``CURRENT`` names if it is another one; True when it switched."""
        with self._refresh_lock:
            try:
                if current_version(self.layout, self.name) == self._served.version:
                    self.refresh_error = None
                    return False
                loaded = load_version(self.layout, self.name, reuse=self._served)
            except Exception as error:  # keep serving the loaded version; say why the new one is not served
                message = " ".join(str(error).split()) or type(error).__name__
                if message != self.refresh_error:
                    logger.error("index %s: keeping v%d, the published version could not be loaded: %s",
                                 self.name, self._served.version, message)
                self.refresh_error = message
                return False
            previous, self._served = self._served.version, loaded
            self.refresh_error = None
            self.switches += 1
            logger.info("index %s: now serving v%d (was v%d)", self.name, loaded.version, previous)
            return True

    def start(self) -> None:
        if self._thread is None and self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._watch, name=f"watch-{self.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()
