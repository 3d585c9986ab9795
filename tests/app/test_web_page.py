"""GET /api/ui and its files, without a host: the redirect to the folder, media types, the
strict Content-Security-Policy and the other security headers, ETag revalidation, a name the
page does not have (the JSON 404 of the one mapping); and the page's own files hold no inline
code (the policy would refuse it) and ask for nothing the app does not serve."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import azure.functions as func
import pytest

from http_api import handlers, web_page
from http_api.errors import answer_for
from rules.settings import StorageSettings
from storage.azure_blob import blob_link_origin

ORIGIN = "http://127.0.0.1:10000"
UI = "http://127.0.0.1:7071/api/ui"


def get(url: str, file: str | None, headers: dict[str, str] | None = None) -> func.HttpResponse:
    req = func.HttpRequest(
        method="GET",
        url=url,
        headers=headers or {},
        params={},
        route_params={"file": file},  # type: ignore[dict-item]  # the host sends null
        body=b"",
    )
    try:
        return web_page.serve(req, ORIGIN)
    except Exception as exc:
        return answer_for(exc)


def csp(response: func.HttpResponse) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {
        part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else ""
        for part in (p.strip() for p in policy.split(";"))
    }


def test_the_page_without_its_slash_is_redirected_to_the_folder():
    response = get(UI, None)
    assert response.status_code == 308
    # Relative to /api/ui, "ui/" is /api/ui/: no host name taken from the request.
    assert response.headers["Location"] == "ui/"


def test_the_page_is_html_with_a_strict_policy():
    response = get(UI + "/", None)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.charset == "utf-8"
    assert response.get_body() == (web_page.UI_DIR / "index.html").read_bytes()
    policy = csp(response)
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["img-src"] == ORIGIN  # the image store's links, nothing else
    assert policy["form-action"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert "require-trusted-types-for" in policy
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["ETag"].startswith('"')


@pytest.mark.parametrize(
    ("name", "mimetype"), [("app.js", "text/javascript"), ("style.css", "text/css")]
)
def test_each_file_has_its_media_type(name, mimetype):
    response = get(f"{UI}/{name}", name)
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert response.get_body() == (web_page.UI_DIR / name).read_bytes()
    assert "Content-Security-Policy" in response.headers


@pytest.mark.parametrize("sent", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
def test_an_unchanged_file_is_a_304_without_a_body(sent):
    first = get(f"{UI}/app.js", "app.js")
    etag = first.headers["ETag"]
    again = get(f"{UI}/app.js", "app.js", {"if-none-match": sent.format(etag=etag)})
    assert again.status_code == 304
    assert again.get_body() == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == "no-cache"


def test_a_changed_file_is_sent_again():
    response = get(f"{UI}/app.js", "app.js", {"if-none-match": '"an-older-one"'})
    assert response.status_code == 200


@pytest.mark.parametrize("name", ["secret.txt", "..%2Fblueprint.py", "web_page.py", "INDEX.HTML"])
def test_a_name_the_page_does_not_have_is_the_json_404(name):
    response = get(f"{UI}/{name}", name)
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert json.loads(response.get_body())["error"]["code"] == "no_such_route"


def test_other_methods_on_the_new_paths_are_405_with_allow():
    table = {
        "ui": ("GET",),
        "ui/": ("GET",),
        "ui/app.js": ("GET",),
        "images/img-x-1/client-timings": ("POST",),
    }
    for path, allowed in table.items():
        matching = [methods for pattern, methods in handlers.ROUTES if pattern.fullmatch(path)]
        assert matching == [allowed], path


class _Page(HTMLParser):
    """What index.html asks for and anything inline in it."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for attr, _ in attrs:
            if attr == "style" or attr.startswith("on"):
                self.inline.append(f"{tag} {attr}")
        if tag == "style":
            self.inline.append("style element")
        if tag == "script":
            self._in_script = True
            if not named.get("src"):
                self.inline.append("script without src")
            else:
                self.links.append(str(named["src"]))
        if tag == "link" and named.get("href"):
            self.links.append(str(named["href"]))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("script text")


def test_the_page_has_no_inline_code_and_asks_only_for_its_own_files():
    page = _Page()
    page.feed((web_page.UI_DIR / "index.html").read_text(encoding="utf-8"))
    assert page.inline == []
    assert sorted(page.links) == sorted(set(web_page.MEDIA_TYPES) - {web_page.INDEX})
    script = (web_page.UI_DIR / "app.js").read_text(encoding="utf-8")
    # Trusted Types are required: nothing written as HTML, nothing evaluated.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    # The prompt never travels in a URL: the page's only request with a body is a POST.
    assert re.search(r"[?&]prompt=", script) is None


def test_every_file_of_the_folder_is_served_and_nothing_else_is_there():
    on_disk = {path.name for path in web_page.UI_DIR.iterdir()}
    assert on_disk == set(web_page.MEDIA_TYPES)


@pytest.mark.parametrize(
    ("storage", "origin"),
    [
        (StorageSettings(connection_string="UseDevelopmentStorage=true"), ORIGIN),
        (
            StorageSettings(
                connection_string="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                "AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:41234/devstoreaccount1;"
            ),
            "http://127.0.0.1:41234",
        ),
        (
            StorageSettings(account_url="https://imagesacct.blob.core.windows.net/"),
            "https://imagesacct.blob.core.windows.net",
        ),
    ],
)
def test_the_image_origin_comes_from_the_storage_settings(storage, origin):
    assert blob_link_origin(storage) == origin
