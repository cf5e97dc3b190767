"""Images of mailouts: the media table, downloading an image (media.fetch_image) from a
server on this machine, and serving it at GET /media/<sha256>.<ext>, through Flask and
through gunicorn."""

from __future__ import annotations

import gzip
import hashlib
import threading
import time

import psycopg
import pytest
import requests

from amazonsender import create_app, store
from amazonsender.media import (
    MAX_REDIRECTS,
    Image,
    ImageRefused,
    ImageUnreachable,
    fetch_image,
    media_url,
    parse_media_name,
)
from tests.fakes import FakeTransport
from tests.support.http_origin import HttpOrigin, Reply
from tests.support.images import GIF, HTML, JPEG, PNG, SAMPLES, SVG, WEBP
from tests.support.processes import free_port, run_gunicorn, service_env
from tests.support.ses_standin import SesStandIn

EXTENSION = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


def image_of(data: bytes, content_type: str) -> Image:
    return Image(sha256=hashlib.sha256(data).hexdigest(), content_type=content_type, data=data)


def save(pool, image: Image, source_url: str | None = None) -> bool:
    with pool.connection() as conn:
        return store.save_media(conn, image.sha256, image.content_type, image.data, source_url)


# --- the table and the store ------------------------------------------------------------------


def test_the_migration_made_the_media_table_with_row_level_security(conn):
    row = conn.execute("SELECT relrowsecurity FROM pg_class WHERE oid = 'media'::regclass").fetchone()
    assert row["relrowsecurity"] is True
    applied = conn.execute("SELECT version FROM schema_migrations WHERE version = '013_media.sql'").fetchone()
    assert applied is not None


def test_saving_the_same_image_twice_stores_it_once(pool, conn):
    image = image_of(PNG, "image/png")
    assert save(pool, image, "https://files.example.test/first.png?sig=1") is True
    assert save(pool, image, "https://files.example.test/second.png") is False
    rows = conn.execute("SELECT sha256, content_type, size, source_url FROM media").fetchall()
    assert rows == [{"sha256": image.sha256, "content_type": "image/png", "size": len(PNG),
                     "source_url": "https://files.example.test/first.png?sig=1"}]
    with pool.connection() as c:
        assert store.get_media(c, image.sha256) == {"content_type": "image/png", "size": len(PNG), "bytes": PNG}
        assert store.get_media(c, image.sha256, with_bytes=False) == {"content_type": "image/png", "size": len(PNG)}
        assert store.get_media(c, "0" * 64) is None


def test_two_imports_of_the_same_image_at_once_both_succeed(pool, conn):
    image = image_of(GIF, "image/gif")
    results = []
    with pool.connection() as first:
        assert store.save_media(first, image.sha256, image.content_type, image.data) is True
        # The second waits for the first's transaction, then finds the row.
        second = threading.Thread(target=lambda: results.append(save(pool, image)))
        second.start()
        wait_until_waiting_for_a_lock(conn)
    second.join(timeout=10)
    assert results == [False]
    assert conn.execute("SELECT count(*) AS n FROM media").fetchone()["n"] == 1


def wait_until_waiting_for_a_lock(conn, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    while conn.execute(query).fetchone()["n"] == 0:
        assert time.monotonic() < deadline, "the second insert never waited"
        time.sleep(0.01)


@pytest.mark.parametrize(
    "sha256, content_type, data",
    [
        ("0" * 64, "image/png", PNG),  # not the hash of the bytes
        (hashlib.sha256(PNG).hexdigest().upper(), "image/png", PNG),
        (hashlib.sha256(SVG).hexdigest(), "image/svg+xml", SVG),
        (hashlib.sha256(HTML).hexdigest(), "text/html", HTML),
        (hashlib.sha256(b"").hexdigest(), "image/png", b""),
    ],
    ids=["wrong-hash", "upper-case-hash", "svg", "html", "empty"],
)
def test_the_table_refuses_a_row_media_py_would_never_write(pool, conn, sha256, content_type, data):
    with pytest.raises(psycopg.errors.CheckViolation), pool.connection() as c:
        store.save_media(c, sha256, content_type, data)
    assert conn.execute("SELECT count(*) AS n FROM media").fetchone()["n"] == 0


# --- names and URLs ----------------------------------------------------------------------------


def test_media_url_is_the_base_url_then_the_hash_and_the_extension_of_the_type():
    image = image_of(JPEG, "image/jpeg")
    assert media_url("https://news.example.test", image) == f"https://news.example.test/media/{image.sha256}.jpg"
    assert media_url("https://news.example.test/", image) == f"https://news.example.test/media/{image.sha256}.jpg"
    assert parse_media_name(image.name) == (image.sha256, "image/jpeg")


@pytest.mark.parametrize(
    "name",
    ["a" * 64 + ".jpeg", "A" * 64 + ".png", "a" * 63 + ".png", "a" * 65 + ".png", "a" * 64, "a" * 64 + ".svg",
     "a" * 64 + ".png\n", "a" * 64 + ".PNG", "g" * 64 + ".png", "../" + "a" * 64 + ".png", "a" * 64 + ".png\x00"],
)
def test_any_other_name_is_not_a_media_name(name):
    assert parse_media_name(name) is None


# --- downloading -------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", sorted(SAMPLES))
def test_each_accepted_type_is_fetched_with_its_hash_and_extension(content_type):
    data = SAMPLES[content_type]
    with HttpOrigin({"/image": Reply(headers={"Content-Type": content_type}, body=data)}) as origin:
        image = fetch_image(origin.url + "/image?X-Amz-Signature=abc")
    assert image == image_of(data, content_type)
    assert image.ext == EXTENSION[content_type]
    (request,) = origin.requests
    assert request.headers["Accept"] == "image/png, image/jpeg, image/gif, image/webp"
    assert request.headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize("declared", ["image/jpg", "IMAGE/JPEG", "image/jpeg; charset=binary", "image/pjpeg"])
def test_common_spellings_of_the_jpeg_type_are_jpeg(declared):
    with HttpOrigin({"/a": Reply(headers={"Content-Type": declared}, body=JPEG)}) as origin:
        assert fetch_image(origin.url + "/a").content_type == "image/jpeg"


def refusal(reply: Reply, *, max_bytes: int = 1000, path: str = "/a", routes=None) -> ImageRefused:
    with HttpOrigin({path: reply, **(routes or {})}) as origin:
        with pytest.raises(ImageRefused) as caught:
            fetch_image(origin.url + path, max_bytes=max_bytes)
    return caught.value


def test_a_content_length_over_the_cap_is_refused_before_the_body_is_read():
    # The body stops far short of what the header says: reading it would end
    # in an incomplete download (ImageUnreachable), not in this refusal.
    reply = Reply(headers={"Content-Type": "image/png"}, body=PNG, content_length=10**9)
    assert refusal(reply).reason == "larger than 1000 bytes"


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_a_body_over_the_cap_without_a_content_length_is_cut_off(framing):
    # 64 MiB on offer; the client stops one byte past its cap of 1000.
    reply = Reply(headers={"Content-Type": "image/png"}, body=PNG[:8] + b"\x00" * 65528, repeat=1024, framing=framing)
    assert refusal(reply).reason == "larger than 1000 bytes"


def test_a_compressed_body_is_capped_by_its_decoded_size():
    # A small Content-Length, under the cap, for a body that inflates past it.
    bomb = gzip.compress(PNG + b"\x00" * 10_000_000)
    assert len(bomb) < 100_000
    reply = Reply(headers={"Content-Type": "image/png", "Content-Encoding": "gzip"}, body=bomb)
    assert refusal(reply, max_bytes=100_000).reason == "larger than 100000 bytes"


def test_a_body_at_the_cap_is_taken():
    reply = Reply(headers={"Content-Type": "image/png"}, body=PNG, framing="close")
    with HttpOrigin({"/a": reply}) as origin:
        assert fetch_image(origin.url + "/a", max_bytes=len(PNG)).data == PNG


@pytest.mark.parametrize(
    "declared, data, reason",
    [
        ("image/png", GIF, "declared image/png but the file is image/gif"),
        ("image/webp", JPEG, "declared image/webp but the file is image/jpeg"),
        ("image/png", SVG, "the file is not a PNG, JPEG, GIF or WebP image (declared image/png)"),
        ("image/gif", HTML, "the file is not a PNG, JPEG, GIF or WebP image (declared image/gif)"),
        ("image/png", b"", "the file is not a PNG, JPEG, GIF or WebP image (declared image/png)"),
        ("image/webp", b"RIFF\x00\x00\x00\x00WAVE", "the file is not a PNG, JPEG, GIF or WebP image (declared image/webp)"),
        ("image/svg+xml", SVG, "not a PNG, JPEG, GIF or WebP image (Content-Type: image/svg+xml)"),
        ("text/html; charset=utf-8", HTML, "not a PNG, JPEG, GIF or WebP image (Content-Type: text/html)"),
        ("application/octet-stream", PNG, "not a PNG, JPEG, GIF or WebP image (Content-Type: application/octet-stream)"),
        (None, PNG, "not a PNG, JPEG, GIF or WebP image (Content-Type: none)"),
    ],
    ids=["gif-as-png", "jpeg-as-webp", "svg-as-png", "html-as-gif", "empty", "riff-not-webp", "svg", "html",
         "octet-stream", "no-type"],
)
def test_the_declared_type_and_the_bytes_must_both_be_an_accepted_image_and_agree(declared, data, reason):
    headers = {"Content-Type": declared} if declared else {}
    assert refusal(Reply(headers=headers, body=data)).reason == reason


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_a_client_error_is_refused_with_its_status(status):
    reason = refusal(Reply(status, {"Content-Type": "text/html"}, HTML)).reason
    assert reason.startswith(f"the server answered {status}")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_server_error_may_pass_and_says_so(status):
    with HttpOrigin({"/a": Reply(status, {"Content-Type": "image/png"}, PNG)}) as origin:
        with pytest.raises(ImageUnreachable) as caught:
            fetch_image(origin.url + "/a")
    assert caught.value.reason == f"the server answered {status}"


def test_redirects_are_followed_up_to_the_limit():
    hops = {f"/hop{n}": Reply(302, {"Location": f"/hop{n + 1}"}) for n in range(MAX_REDIRECTS)}
    hops[f"/hop{MAX_REDIRECTS}"] = Reply(headers={"Content-Type": "image/gif"}, body=GIF)
    with HttpOrigin(hops) as origin:
        assert fetch_image(origin.url + "/hop0").data == GIF


def test_one_redirect_too_many_and_a_loop_are_refused():
    hops = {f"/hop{n}": Reply(302, {"Location": f"/hop{n + 1}"}) for n in range(MAX_REDIRECTS + 1)}
    hops[f"/hop{MAX_REDIRECTS + 1}"] = Reply(headers={"Content-Type": "image/gif"}, body=GIF)
    assert refusal(hops["/hop0"], path="/hop0", routes=hops).reason == f"more than {MAX_REDIRECTS} redirects"
    loop = Reply(301, {"Location": "/loop"})
    with HttpOrigin({"/loop": loop}) as origin:
        with pytest.raises(ImageRefused, match="redirects"):
            fetch_image(origin.url + "/loop")
    assert len(origin.requests) == MAX_REDIRECTS + 1


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/a.png", "gopher://127.0.0.1:70/"])
def test_a_redirect_to_another_scheme_is_refused(target):
    reason = refusal(Reply(302, {"Location": target})).reason
    assert reason == "the URL, or one it redirects to, is not an http or https URL"


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://files.example.test/a.png", "javascript:alert(1)", "data:image/png;base64,iVBORw0K",
     "//files.example.test/a.png", "https://", "http://[::1/a.png", "", "image.png"],
)
def test_only_http_and_https_urls_are_fetched(url):
    with pytest.raises(ImageRefused) as caught:
        fetch_image(url)
    assert caught.value.reason == "not an http or https URL"


def test_a_server_that_is_not_there_may_be_there_later():
    url = f"http://127.0.0.1:{free_port()}/a.png"
    with pytest.raises(ImageUnreachable, match="the download failed"):
        fetch_image(url)


def test_a_download_past_its_time_is_given_up():
    ticks = iter(range(0, 10_000, 100))  # each look at the clock: 100 s later
    reply = Reply(headers={"Content-Type": "image/png"}, body=PNG)
    with HttpOrigin({"/a": reply}) as origin:
        with pytest.raises(ImageUnreachable, match="took longer than"):
            fetch_image(origin.url + "/a", clock=lambda: next(ticks))


def test_a_given_session_is_used_and_kept_open():
    with HttpOrigin({"/a": Reply(headers={"Content-Type": "image/png"}, body=PNG)}) as origin:
        with requests.Session() as session:
            session.headers["User-Agent"] = "importer-test"
            assert fetch_image(origin.url + "/a", session=session).data == PNG
            assert fetch_image(origin.url + "/a", session=session).data == PNG
    assert [r.headers["User-Agent"] for r in origin.requests] == ["importer-test"] * 2


def test_no_error_message_holds_the_query_string():
    secret = "X-Amz-Signature=0123456789abcdef"
    with HttpOrigin({"/a.png": Reply(403, {"Content-Type": "text/plain"}, b"expired")}) as origin:
        with pytest.raises(ImageRefused) as caught:
            fetch_image(origin.url + f"/a.png?{secret}")
        assert caught.value.url == origin.url + "/a.png"
    assert secret not in str(caught.value)
    with pytest.raises(ImageUnreachable) as unreachable:
        fetch_image(f"http://user:password@127.0.0.1:{free_port()}/b.png?{secret}")
    assert secret not in str(unreachable.value) and "password" not in str(unreachable.value)


# --- GET /media/<sha256>.<ext> -----------------------------------------------------------------


@pytest.fixture
def media_client(settings, pool):
    app = create_app(settings, pool=pool, transport=FakeTransport())
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture
def stored(pool) -> dict[str, Image]:
    images = {content_type: image_of(data, content_type) for content_type, data in SAMPLES.items()}
    for image in images.values():
        save(pool, image)
    return images


def served_path(image: Image) -> str:
    return media_url("", image)


def assert_cacheable_image_headers(response, image: Image) -> None:
    headers = response.headers
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["ETag"] == f'"{image.sha256}"'
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in headers


@pytest.mark.parametrize("content_type", sorted(SAMPLES))
def test_a_stored_image_is_served_with_its_type_and_cached_for_a_year(media_client, stored, content_type):
    image = stored[content_type]
    response = media_client.get(served_path(image))
    assert response.status_code == 200
    assert response.data == image.data
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Length"] == str(len(image.data))
    assert_cacheable_image_headers(response, image)


def test_head_answers_the_headers_of_get_without_the_body(media_client, stored):
    image = stored["image/webp"]
    response = media_client.head(served_path(image))
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["Content-Type"] == "image/webp"
    assert response.headers["Content-Length"] == str(len(WEBP))
    assert_cacheable_image_headers(response, image)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("if_none_match", ['"{sha}"', 'W/"{sha}"', '"other", "{sha}"', "*"])
def test_a_cache_that_has_the_image_gets_304(media_client, stored, method, if_none_match):
    image = stored["image/png"]
    response = media_client.open(
        served_path(image), method=method, headers={"If-None-Match": if_none_match.format(sha=image.sha256)}
    )
    assert response.status_code == 304
    assert response.data == b""
    assert_cacheable_image_headers(response, image)


def test_a_cache_that_has_another_version_gets_the_image(media_client, stored):
    image = stored["image/png"]
    response = media_client.get(served_path(image), headers={"If-None-Match": f'"{"0" * 64}"'})
    assert response.status_code == 200 and response.data == PNG


def test_an_unknown_image_is_404_even_to_a_cache(media_client, stored):
    unknown = image_of(PNG + b"\x00", "image/png")
    for headers in ({}, {"If-None-Match": f'"{unknown.sha256}"'}, {"If-None-Match": "*"}):
        response = media_client.get(served_path(unknown), headers=headers)
        assert response.status_code == 404, headers
        assert response.json == {"error": "no such image"}
        assert "immutable" not in response.headers.get("Cache-Control", "")


def not_served_paths(stored: dict[str, Image]) -> list[str]:
    png = stored["image/png"]
    return [
        f"/media/{png.sha256.upper()}.png",  # upper-case hex
        f"/media/{png.sha256}.gif",  # the extension of another type
        f"/media/{png.sha256}.jpg",
        f"/media/{png.sha256}.PNG",
        f"/media/{png.sha256}.svg",
        f"/media/{png.sha256}",
        f"/media/{png.sha256}.png.png",
        f"/media/{png.sha256[:-1]}.png",
        f"/media/{png.sha256}0.png",
        f"/media/{png.sha256}.png/",
        f"/media/{png.sha256}.png%00",  # NUL
        f"/media/{png.sha256}%00.png",
        f"/media/{png.sha256}.png%0a",
        "/media/..%2f..%2fetc%2fpasswd",  # traversal
        f"/media/..%2F{png.sha256}.png",
        f"/media/%2e%2e/{png.sha256}.png",
        "/media/../sql/013_media.sql",
        "/media/.png",
        "/media/",
        "/media/" + "a" * 100_000 + ".png",  # very long
        "/media/" + "%C3%A9" * 32 + ".png",  # not ASCII
    ]


def test_any_other_path_is_404_and_changes_nothing(media_client, stored, conn):
    before = conn.execute("SELECT sha256, content_type, size FROM media ORDER BY sha256").fetchall()
    for path in not_served_paths(stored):
        for method in ("GET", "HEAD"):
            response = media_client.open(path, method=method)
            assert response.status_code == 404, (method, path[:120])
            assert "immutable" not in response.headers.get("Cache-Control", ""), path[:120]
    assert conn.execute("SELECT sha256, content_type, size FROM media ORDER BY sha256").fetchall() == before


def test_other_methods_are_405(media_client, stored):
    path = served_path(stored["image/gif"])
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = media_client.open(path, method=method)
        assert response.status_code == 405, method
        assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert media_client.get(path).data == GIF


# --- the same through gunicorn -----------------------------------------------------------------


def raw_request(url: str, request_line: bytes) -> bytes:
    """What the server answers to a request line sent byte for byte."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: news.example.test\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_gunicorn_serves_an_image_and_refuses_hostile_paths(database_url, pool, stored, tmp_path):
    image = stored["image/jpeg"]
    with SesStandIn() as ses, run_gunicorn(service_env(tmp_path, database_url, ses), tmp_path) as server:
        url = server.url + served_path(image)
        got = requests.get(url, timeout=10)
        assert (got.status_code, got.content, got.headers["Content-Type"]) == (200, JPEG, "image/jpeg")
        assert_cacheable_image_headers(got, image)
        head = requests.head(url, timeout=10)
        assert (head.status_code, head.content, head.headers["Content-Length"]) == (200, b"", str(len(JPEG)))
        again = requests.get(url, headers={"If-None-Match": got.headers["ETag"]}, timeout=10)
        assert (again.status_code, again.content) == (304, b"")
        assert requests.get(server.url + f"/media/{image.sha256}.png", timeout=10).status_code == 404
        assert requests.get(server.url + f"/media/{image.sha256}.jpg%00", timeout=10).status_code == 404
        # A raw NUL (400) and a request line past gunicorn's limit (414): refused before the app.
        nul = raw_request(server.url, b"GET /media/" + image.sha256.encode() + b"\x00.jpg HTTP/1.1")
        assert nul.startswith(b"HTTP/1.1 400 "), nul[:200]
        long = raw_request(server.url, b"GET /media/" + b"a" * 10_000 + b".jpg HTTP/1.1")
        assert long.startswith(b"HTTP/1.1 414 "), long[:200]
        assert requests.get(url, timeout=10).content == JPEG
