"""The search service: a FastAPI app over one published index, its page, and its metrics.

Every search is answered from the one ``ServedVersion`` it took when it started (``pipeline/service/
live_index.py``); its JSON is the same as ``reelhash search --json`` and carries that version in the body and
in the ``X-Reelhash-Version`` header. Media and thumbnails are looked up by ``video_id`` among the items of the
served version, so no part of a request ever becomes a file path. Limits and the token: docs/serving.md.
"""

from __future__ import annotations

import mimetypes
import secrets
import tempfile
import time
from pathlib import Path, PurePosixPath

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool

from pipeline.catalog import media_kind
from pipeline.decode import DecodeError, probe_video
from pipeline.search import search_response
from pipeline.service.config import ServiceConfig
from pipeline.service.live_index import LiveIndex, ServedVersion
from pipeline.store import as_path, is_uri

STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
TOKEN_COOKIE = "reelhash_token"
UPLOAD_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and headers around the file
STREAM_CHUNK = 256 * 1024
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """Prometheus metrics of one app (its own registry: two apps in one process do not share counters)."""

    def __init__(self, live: LiveIndex):
        self.registry = CollectorRegistry()
        self.queries = Counter("reelhash_queries", "Searches answered", ["kind"], registry=self.registry)
        self.latency = Histogram("reelhash_query_seconds", "Time to answer a search, encoding included", ["kind"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.rejected = Counter("reelhash_rejected_requests", "Requests answered with a 4xx", ["status"],
                                registry=self.registry)
        version = Gauge("reelhash_index_version", "Published version being served", registry=self.registry)
        version.set_function(lambda: live.served.version)
        switches = Gauge("reelhash_version_switches", "Versions switched to since start", registry=self.registry)
        switches.set_function(lambda: live.switches)


def one_line(error: BaseException | str) -> str:
    return " ".join(str(error).split())


def create_app(config: ServiceConfig, live: LiveIndex) -> FastAPI:
    app = FastAPI(title="reelhash search", description="Text and example search over a published reelhash index.",
                  docs_url="/docs", redoc_url=None)
    metrics = ServiceMetrics(live)
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization"])

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
                             for e in error.errors())
        metrics.rejected.labels("400").inc()
        return JSONResponse({"detail": f"bad request: {problems}"}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        if 400 <= error.status_code < 500:
            metrics.rejected.labels(str(error.status_code)).inc()
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    def authorized(request: Request) -> bool:
        if config.token is None:
            return True
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE, "")
        return secrets.compare_digest(given.encode(), config.token.encode())

    async def require_token(request: Request) -> None:
        # async: a plain def dependency would cost every request a hop through the thread pool
        if not authorized(request):
            raise HTTPException(401, "a valid token is required: send 'Authorization: Bearer TOKEN' "
                                     "(the service's REELHASH_API_TOKEN)", headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(require_token)]

    def check_k(k: int) -> int:
        if not 1 <= k <= config.max_k:
            raise HTTPException(400, f"k must be between 1 and {config.max_k}, got {k}")
        return k

    def answered(served: ServedVersion, body: dict, kind: str, started: float,
                 timings: dict[str, float] | None = None) -> JSONResponse:
        metrics.queries.labels(kind).inc()
        metrics.latency.labels(kind).observe(time.perf_counter() - started)
        headers = {"X-Reelhash-Version": str(served.version), "Cache-Control": "no-store"}
        if timings:  # where the time went, for clients and benchmarks (the standard Server-Timing header)
            headers["Server-Timing"] = ", ".join(f"{name};dur={seconds * 1000:.2f}" for name, seconds in timings.items())
        return JSONResponse(body, headers=headers)

    def text_search(q: str, k: int) -> JSONResponse:
        started, served = time.perf_counter(), live.served
        q = q.strip()
        if not q:
            raise HTTPException(400, "the query is empty: give some words, e.g. ?q=a+red+square")
        if len(q) > config.max_query_chars:
            raise HTTPException(400, f"the query has {len(q)} characters; at most {config.max_query_chars} are "
                                     "accepted")
        check_k(k)
        encoding = time.perf_counter()
        codes = served.hasher.text_codes([q])
        searching = time.perf_counter()
        hits = served.index.search(codes, k)
        done = time.perf_counter()
        return answered(served, search_response(served.index, q, k, hits, served.hasher.text_warnings(q)), "text",
                        started, {"encode": searching - encoding, "search": done - searching})

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        """Liveness: answers without a token."""
        return {"status": "ok", "index": live.name, "version": live.served.version}

    @app.get("/api/index", dependencies=guarded, tags=["index"])
    def index_info() -> dict:
        """The served version: model, bits, counts, metrics, and whether a newer version failed to load."""
        served = live.served
        manifest = served.index.manifest
        return {"index": live.name, "version": served.version, "model_id": manifest["model_id"],
                "code_bits": manifest["code_bits"], "counts": manifest.get("counts", {}),
                "search_index": manifest.get("search_index", {"kind": "flat", "exact": True}),
                "metrics": manifest.get("metrics", {}), "collections": sorted(manifest.get("collections", {})),
                "published_at": manifest.get("published_at"), "loaded_at": served.loaded_at,
                "version_switches": live.switches, "refresh_error": live.refresh_error,
                "limits": {"max_query_chars": config.max_query_chars, "max_k": config.max_k,
                           "max_upload_bytes": config.max_upload_bytes,
                           "max_upload_seconds": config.max_upload_seconds}}

    @app.get("/api/search", dependencies=guarded, tags=["search"])
    def search_get(q: str = "", k: int = config.default_k) -> JSONResponse:
        """Text search: the top-k videos (each by its closest clip) for a sentence."""
        return text_search(q, k)

    @app.post("/api/search", dependencies=guarded, tags=["search"])
    def search_post(body: dict) -> JSONResponse:
        """Text search with the query in a JSON body ``{"q": "...", "k": 10}`` (no URL length limit)."""
        q, k = body.get("q", ""), body.get("k", config.default_k)
        if not isinstance(q, str) or isinstance(k, bool) or not isinstance(k, int):
            raise HTTPException(400, 'the body must be {"q": "text", "k": integer}')
        return text_search(q, k)

    @app.get("/api/search/like", dependencies=guarded, tags=["search"])
    def like_video(video_id: str, k: int = config.default_k) -> JSONResponse:
        """Search by example: the videos closest to an indexed video (its own clips' codes)."""
        started, served = time.perf_counter(), live.served
        check_k(k)
        codes = served.index.codes_of_video(video_id)
        if len(codes) == 0:
            raise HTTPException(404, f"no video with id {video_id!r} in index {live.name} v{served.version}")
        hits = served.index.search(codes, k, prefer_video=video_id)
        return answered(served, search_response(served.index, video_id, k, hits, []), "like_id", started)

    @app.post("/api/search/like", dependencies=guarded, tags=["search"])
    async def like_upload(request: Request, k: int = config.default_k) -> JSONResponse:
        """Search by example with an uploaded image or short video (multipart field ``file``), decoded and
        encoded exactly like the archive."""
        started, served = time.perf_counter(), live.served
        check_k(k)
        length = request.headers.get("content-length")
        if length is None:
            raise HTTPException(411, "send the upload with a Content-Length (curl -F file=@query.mp4 does)")
        if not length.isdigit() or int(length) > config.max_upload_bytes + UPLOAD_OVERHEAD_BYTES:
            raise HTTPException(413, f"the upload is larger than {config.max_upload_bytes} bytes")
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, "send the image or video as the multipart field 'file' (curl -F file=@x.mp4)")
        suffix = PurePosixPath(upload.filename or "").suffix.lower()
        suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 6 else ""
        with tempfile.TemporaryDirectory(prefix="reelhash-query-") as scratch:
            local = Path(scratch) / f"query{suffix}"  # the client's name never becomes a path: only a checked suffix
            size = 0
            with local.open("wb") as out:
                while chunk := await upload.read(STREAM_CHUNK):
                    size += len(chunk)
                    if size > config.max_upload_bytes:
                        raise HTTPException(413, f"the upload is larger than {config.max_upload_bytes} bytes")
                    out.write(chunk)
            if size == 0:
                raise HTTPException(400, "the uploaded file is empty")
            codes, warnings = await run_in_threadpool(hash_upload, served, local, config.max_upload_seconds)
        hits = served.index.search(codes, k)
        name = upload.filename or "upload"
        return answered(served, search_response(served.index, name, k, hits, warnings), "like_upload", started)

    @app.get("/api/media/{video_id}", dependencies=guarded, tags=["media"])
    def media(video_id: str, request: Request) -> Response:
        """The media file of an indexed video, with HTTP range requests (what ``<video>`` needs to seek)."""
        served = live.served
        location = served.media.get(video_id)
        if location is None:
            raise HTTPException(404, f"no video with id {video_id!r} in index {live.name} v{served.version}")
        media_type = mimetypes.guess_type(location)[0] or "application/octet-stream"
        if is_uri(location):
            return object_response(location, media_type, request.headers.get("range"))
        path = Path(location)
        if not path.is_file():
            raise HTTPException(404, f"the media of {video_id} is not reachable from the service ({location} "
                                     "does not exist here)")
        return FileResponse(path, media_type=media_type)

    @app.get("/api/thumbnail/{video_id}/{clip_idx}", dependencies=guarded, tags=["media"])
    def thumbnail(video_id: str, clip_idx: int) -> Response:
        """The small JPEG captured for one clip during extraction, stored with the served version."""
        served = live.served
        data = served.index.thumbnail(video_id, clip_idx)
        if data is None:
            raise HTTPException(404, f"no thumbnail for clip {clip_idx} of {video_id!r} in index {live.name} "
                                     f"v{served.version}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/metrics", dependencies=guarded, tags=["service"])
    def prometheus() -> Response:
        """Prometheus text format: queries, latency histogram, served version."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def page(request: Request) -> Response:
        if not authorized(request):
            return HTMLResponse(LOGIN_PAGE, status_code=401)
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        token = (await request.form(max_fields=2)).get("token")
        if config.token is None or not isinstance(token, str) or not secrets.compare_digest(
                token.encode(), config.token.encode()):
            return HTMLResponse(LOGIN_PAGE.replace("<!--error-->", "<p class=error>Wrong token.</p>"), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/static/{name}", dependencies=guarded, include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, "no such file")
        return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    return app


def hash_upload(served: ServedVersion, path: Path, max_seconds: float):
    """Codes and warnings of an uploaded query file; 413 when too long, 415 when it cannot be decoded."""
    try:
        if media_kind(str(path)) != "image":
            try:
                seconds = probe_video(str(path)).duration_s
            except DecodeError:
                seconds = None  # maybe an image without a known extension: decoding below decides
            if seconds is not None and seconds > max_seconds:
                raise HTTPException(413, f"the query video is {seconds:.0f} s long; at most {max_seconds:g} s are "
                                         "accepted")
        return served.hasher.video_query(str(path))
    except DecodeError as error:
        raise HTTPException(415, f"the upload is not an image or video that can be decoded: {one_line(error)}") \
            from None


def object_response(location: str, media_type: str, range_header: str | None) -> Response:
    """An object-store file streamed to the client, honouring one ``bytes=`` range."""
    path = as_path(location)
    try:
        size = int(path.fs.info(path.path)["size"])
    except (FileNotFoundError, OSError) as error:
        raise HTTPException(404, f"the media at {location} is not reachable from the service: {one_line(error)}") \
            from None
    start, end = 0, size - 1
    status = 200
    if range_header:
        start, end = parse_range(range_header, size)
        status = 206

    def chunks():
        with path.fs.open(path.path, "rb") as stream:
            stream.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                data = stream.read(min(STREAM_CHUNK, remaining))
                if not data:
                    return
                remaining -= len(data)
                yield data

    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1)}
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(chunks(), status_code=status, media_type=media_type, headers=headers)


def parse_range(header: str, size: int) -> tuple[int, int]:
    """The first range of a ``Range: bytes=…`` header as inclusive (start, end); 416 when unsatisfiable."""
    unit, _, spec = header.partition("=")
    first = spec.split(",")[0].strip()
    try:
        if unit.strip() != "bytes" or "-" not in first:
            raise ValueError
        low, high = first.split("-", 1)
        if low == "":  # the last N bytes
            start, end = max(0, size - int(high)), size - 1
        else:
            start, end = int(low), min(int(high), size - 1) if high else size - 1
    except ValueError:
        raise HTTPException(416, f"malformed Range header {header!r}", headers={"Content-Range": f"bytes */{size}"}) \
            from None
    if start > end or start >= size:
        raise HTTPException(416, f"range {header!r} is outside the file ({size} bytes)",
                            headers={"Content-Range": f"bytes */{size}"})
    return start, end


LOGIN_PAGE = """<!doctype html><html lang=en><head><meta charset=utf-8><title>reelhash — token</title>
<link rel=icon href="data:,"><style>body{font:16px system-ui,sans-serif;margin:4em auto;max-width:28em}
input{font:inherit;padding:.4em;width:100%;box-sizing:border-box;margin:.5em 0}.error{color:#b00}</style></head>
<body><h1>reelhash search</h1><p>This service needs its access token.</p><!--error-->
<form method=post action=/login><input type=password name=token autocomplete=current-password autofocus
placeholder="token" aria-label="token"><button type=submit>Open</button></form></body></html>"""
