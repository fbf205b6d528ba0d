"""The search service's API against a real uvicorn server and a real published index (pipeline/service/app.py)."""

from __future__ import annotations

import io
import json
import socket

import httpx
import pytest
from PIL import Image
from served_index import INDEX, make_served_store, running_service, service_config

from flows.cli import main as cli_main
from pipeline.service.live_index import LiveIndex
from pipeline.thumbnails import THUMBNAIL_PX


@pytest.fixture(scope="module")
def live(served_store):
    return LiveIndex(served_store.layout, INDEX, poll_seconds=0)


@pytest.fixture(scope="module")
def base_url(served_store, live):
    with running_service(service_config(served_store), live) as url:
        yield url


def raw_get_status(base_url: str, target: str) -> int:
    """The status of a GET sent over a plain socket, for request lines no HTTP client library will send."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status_line = connection.makefile("rb").readline().decode()
    return int(status_line.split()[1])


def get(url: str, **kwargs) -> httpx.Response:
    return httpx.get(url, timeout=60, **kwargs)


def test_healthz_names_the_served_version(base_url):
    response = get(f"{base_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "index": INDEX, "version": 1}


def test_text_search_json_is_the_same_as_the_cli_json(base_url, served_store, capsys):
    response = get(f"{base_url}/api/search", params={"q": "a red square slides left", "k": 2})
    assert response.status_code == 200
    assert cli_main(["search", "a red square slides left", "--k", "2", "--json", "--index", INDEX,
                     "--store", str(served_store.layout.root)]) == 0
    assert response.json() == json.loads(capsys.readouterr().out)
    assert response.headers["X-Reelhash-Version"] == "1"
    assert len(response.json()["results"]) == 2


def test_text_search_by_post_body(base_url):
    response = httpx.post(f"{base_url}/api/search", json={"q": "a blue circle grows", "k": 3}, timeout=60)
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "a blue circle grows" and body["k"] == 3 and len(body["results"]) == 3


def test_search_by_indexed_video_id_finds_that_video_first(base_url, served_store):
    video_id = served_store.video_ids["second.mp4"]
    response = get(f"{base_url}/api/search/like", params={"video_id": video_id, "k": 3})
    assert response.status_code == 200
    first = response.json()["results"][0]
    assert (first["video_id"], first["distance"]) == (video_id, 0)


def test_search_by_uploaded_video_decodes_and_encodes_like_the_archive(base_url, served_store):
    path = served_store.media["first.mp4"]
    with path.open("rb") as file:
        response = httpx.post(f"{base_url}/api/search/like", params={"k": 3}, files={"file": ("q.mp4", file)},
                              timeout=120)
    assert response.status_code == 200, response.text
    distances = {hit["video_id"]: hit["distance"] for hit in response.json()["results"]}
    assert distances[served_store.video_ids["first.mp4"]] == 0  # (random tiny-CLIP codes of other videos may tie)
    assert response.json()["query"] == "q.mp4"


def test_index_info_reports_version_model_and_counts(base_url, served_store):
    info = get(f"{base_url}/api/index").json()
    assert info["version"] == 1 and info["model_id"] == served_store.model_id and info["code_bits"] == 32
    assert info["counts"]["videos"] == 3 and info["refresh_error"] is None


def test_media_is_served_with_range_requests(base_url, served_store):
    video_id, path = served_store.video_ids["odd name é.mp4"], served_store.media["odd name é.mp4"]
    whole = get(f"{base_url}/api/media/{video_id}")
    assert whole.status_code == 200 and whole.content == path.read_bytes()
    assert whole.headers["content-type"] == "video/mp4"
    part = get(f"{base_url}/api/media/{video_id}", headers={"Range": "bytes=10-109"})
    assert part.status_code == 206
    assert part.content == path.read_bytes()[10:110]
    assert part.headers["content-range"] == f"bytes 10-109/{path.stat().st_size}"


def test_thumbnails_of_the_served_version(base_url, served_store):
    video_id = served_store.video_ids["second.mp4"]
    response = get(f"{base_url}/api/thumbnail/{video_id}/1")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "JPEG" and max(image.size) <= THUMBNAIL_PX
    assert get(f"{base_url}/api/thumbnail/{video_id}/99").status_code == 404
    assert get(f"{base_url}/api/thumbnail/..%2F..%2Fmanifest.json/0").status_code == 404


@pytest.mark.parametrize("request_args", [
    ("GET", "/api/search", {"q": ""}),
    ("GET", "/api/search", {"q": "   "}),
    ("GET", "/api/search", {"q": "red", "k": 10**9}),
    ("GET", "/api/search", {"q": "red", "k": 0}),
    ("GET", "/api/search", {"q": "red", "k": "ten"}),
    ("GET", "/api/search/like", {"video_id": "no-such-video"}),
    ("GET", "/api/search/like", {"video_id": "../../etc/passwd"}),
    ("GET", "/api/search/like", {}),
    ("GET", "/api/media/..%2F..%2Fetc%2Fpasswd", {}),
    ("GET", "/api/media/no-such-video", {}),
    ("GET", "/static/..%2Fapp.py", {}),
    ("GET", "/static/index.html", {}),
])
def test_bad_requests_get_a_clear_4xx_and_the_service_keeps_serving(base_url, request_args):
    method, path, params = request_args
    response = httpx.request(method, f"{base_url}{path}", params=params, timeout=60)
    assert 400 <= response.status_code < 500, response.text
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert get(f"{base_url}/api/search", params={"q": "still here"}).status_code == 200


def test_a_100_kb_query_is_refused(base_url):
    long_query = "a" * 100_000
    by_post = httpx.post(f"{base_url}/api/search", json={"q": long_query}, timeout=60)
    assert by_post.status_code == 400 and "at most 1000" in by_post.json()["detail"]
    assert 400 <= raw_get_status(base_url, f"/api/search?q={long_query}") < 500  # (httpx refuses such URLs)
    assert get(f"{base_url}/healthz").status_code == 200


@pytest.mark.parametrize("upload, status, words", [
    (("notes.mp4", b"this is not a video at all"), 415, "not an image or video that can be decoded"),
    (("empty.mp4", b""), 400, "empty"),
    (("picture.png", b"\x89PNG\r\n\x1a\n broken"), 415, "not an image or video that can be decoded"),
])
def test_bad_uploads_are_refused_clearly(base_url, upload, status, words):
    response = httpx.post(f"{base_url}/api/search/like", files={"file": upload}, timeout=60)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_an_upload_without_the_file_field_is_refused(base_url):
    response = httpx.post(f"{base_url}/api/search/like", data={"other": "x"}, timeout=60)
    assert response.status_code == 400 and "'file'" in response.json()["detail"]


def test_upload_size_and_duration_limits(served_store, live):
    path = served_store.media["first.mp4"]
    with running_service(service_config(served_store, max_upload_bytes=1000), live) as url:
        response = httpx.post(f"{url}/api/search/like", files={"file": ("q.mp4", path.read_bytes())}, timeout=60)
        assert response.status_code == 413 and "larger than 1000 bytes" in response.json()["detail"]
    with running_service(service_config(served_store, max_upload_seconds=0.5), live) as url:
        response = httpx.post(f"{url}/api/search/like", files={"file": ("q.mp4", path.read_bytes())}, timeout=60)
        assert response.status_code == 413 and "at most 0.5 s" in response.json()["detail"]


def test_media_that_is_gone_is_reported_plainly(tmp_path):
    store = make_served_store(tmp_path)
    store.media["second.mp4"].unlink()
    live = LiveIndex(store.layout, INDEX, poll_seconds=0)
    with running_service(service_config(store), live) as url:
        response = get(f"{url}/api/media/{store.video_ids['second.mp4']}")
    assert response.status_code == 404 and "not reachable" in response.json()["detail"]


def test_token_guards_everything_but_healthz(served_store, live):
    with running_service(service_config(served_store, token="s3cret"), live) as url:
        assert get(f"{url}/healthz").status_code == 200
        for path in ("/api/index", "/api/search?q=red", "/metrics", "/static/app.js",
                     f"/api/media/{served_store.video_ids['first.mp4']}"):
            assert get(f"{url}{path}").status_code == 401, path
            assert get(f"{url}{path}", headers={"Authorization": "Bearer wrong"}).status_code == 401, path
            assert get(f"{url}{path}", headers={"Authorization": "Bearer s3cret"}).status_code == 200, path
        page = get(f"{url}/")
        assert page.status_code == 401 and "access token" in page.text
        with httpx.Client(base_url=url, timeout=60) as browser:
            assert browser.post("/login", data={"token": "wrong"}).status_code == 401
            assert browser.post("/login", data={"token": "s3cret"}).status_code == 303
            assert browser.get("/").status_code == 200
            assert browser.get("/api/search", params={"q": "red"}).status_code == 200


def test_metrics_count_queries_and_show_the_version(base_url):
    assert get(f"{base_url}/api/search", params={"q": "count me"}).status_code == 200
    text = get(f"{base_url}/metrics").text
    assert "reelhash_index_version 1.0" in text
    count = next(line for line in text.splitlines() if line.startswith('reelhash_queries_total{kind="text"}'))
    assert float(count.split()[-1]) >= 1
    assert 'reelhash_query_seconds_bucket{kind="text",le="+Inf"}' in text


def test_page_and_its_static_files_are_served(base_url):
    page = get(f"{base_url}/")
    assert page.status_code == 200 and 'id="query"' in page.text and "/static/app.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing is fetched from another origin
    assert get(f"{base_url}/static/app.js").headers["content-type"].startswith("text/javascript")
    assert get(f"{base_url}/static/style.css").status_code == 200


def test_openapi_docs_list_the_api(base_url):
    paths = get(f"{base_url}/openapi.json").json()["paths"]
    assert {"/api/search", "/api/search/like", "/api/index", "/api/media/{video_id}", "/healthz",
            "/metrics"} <= set(paths)


def test_no_cors_headers_unless_asked(base_url, served_store, live):
    origin = {"Origin": "http://elsewhere.example"}
    assert "access-control-allow-origin" not in get(f"{base_url}/api/index", headers=origin).headers
    with running_service(service_config(served_store, cors_origins=["http://elsewhere.example"]), live) as url:
        allowed = get(f"{url}/api/index", headers=origin).headers
    assert allowed["access-control-allow-origin"] == "http://elsewhere.example"
