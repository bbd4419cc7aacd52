"""GET /metrics (Prometheus text format), its API key, and the API docs served without a CDN."""

import re

from fastapi.testclient import TestClient
from helpers import encode, make_photo
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from app.config import Settings
from app.factory import create_app

KEY = "k" * 32
SECRET_KEY = SecretStr(KEY)


def scrape(client: TestClient, **headers: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, by name and labels."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def requests(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], **labels: str) -> float:
    return samples.get(("doppel_http_requests_total", frozenset(labels.items())), 0.0)


def test_metrics_count_requests_by_route_template_hashing_and_sizes(client: TestClient) -> None:
    for n in (1, 2):
        response = client.post("/images", files={"file": encode(make_photo(n))}, data={"id": f"cat-{n}"})
        assert response.status_code == 201
    assert client.post("/search", files={"file": encode(make_photo(1))}).status_code == 200
    assert client.get("/images/cat-1").status_code == 200
    assert client.get("/images/nobody").status_code == 404
    assert client.get("/images/nobody-else").status_code == 404
    assert client.post("/images", files={"file": b"not an image"}).status_code == 415
    assert client.get("/no/such/path").status_code == 404

    samples = scrape(client)
    assert requests(samples, method="POST", route="/images", status="201") == 2
    assert requests(samples, method="POST", route="/images", status="415") == 1
    assert requests(samples, method="POST", route="/search", status="200") == 1
    assert requests(samples, method="GET", route="/images/{image_id}", status="200") == 1
    assert requests(samples, method="GET", route="/images/{image_id}", status="404") == 2
    assert requests(samples, method="GET", route="other", status="404") == 1
    # The route is the template: no series names an id or an unrouted path.
    labels = {value for _, pairs in samples for _, value in pairs}
    assert not {"cat-1", "/images/cat-1", "/images/nobody", "/no/such/path"} & labels
    latency = (
        "doppel_http_request_duration_seconds_count",
        frozenset({"method": "POST", "route": "/images"}.items()),
    )
    assert samples[latency] == 3

    # Four uploads decoded (two added, one searched, one refused), each after its wait for a slot.
    assert samples[("doppel_hash_duration_seconds_count", frozenset())] == 4
    assert samples[("doppel_hash_duration_seconds_sum", frozenset())] > 0
    assert samples[("doppel_decode_slot_wait_seconds_count", frozenset())] == 4
    assert samples[("doppel_index_images", frozenset())] == 2
    assert samples[("doppel_store_images", frozenset())] == 2
    assert samples[("doppel_store_bytes", frozenset())] > 0


def test_metrics_need_the_api_key_unless_public(sqlite_settings: Settings) -> None:
    guarded = Settings(data_dir=sqlite_settings.data_dir, api_key=SECRET_KEY)
    with TestClient(create_app(guarded)) as client:
        assert client.get("/metrics").status_code == 401
        samples = scrape(client, authorization=f"Bearer {KEY}")
        # The refused scrape is counted too, before any route was matched.
        assert requests(samples, method="GET", route="other", status="401") == 1

    public = Settings(data_dir=sqlite_settings.data_dir, api_key=SECRET_KEY, metrics_public=True)
    with TestClient(create_app(public)) as client:
        scrape(client)
        assert client.get("/images").status_code == 401  # only /metrics is opened


def test_api_docs_load_their_scripts_from_the_server_itself(sqlite_settings: Settings) -> None:
    # With an API key: the docs and their files need none (they hold no data).
    with TestClient(create_app(Settings(data_dir=sqlite_settings.data_dir, api_key=SECRET_KEY))) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page)
            assert html.status_code == 200
            urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
            scripts = re.findall(r"""<script src=["']([^"']+)["']""", html.text)
            assert scripts and set(scripts) <= set(urls)
            assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
            assert "http://" not in html.text and "https://" not in html.text
            for url in urls:
                assert client.get(url).status_code == 200, url
            for url in scripts:
                asset = client.get(url)
                assert asset.headers["content-type"].startswith(("text/javascript", "application/javascript"))
                assert len(asset.content) > 100_000  # the whole bundle, not a stub
        assert client.get("/openapi.json").status_code == 200
