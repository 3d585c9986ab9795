"""The web page (/api/ui) in headless Chromium against the whole local stack: a person starts a
job, watches its state sentence change, sees a preview and then the final image, the waterfall of
the job's clocks is drawn, and the page's render time reaches metadata.json; a double click, and a
click again while the job runs, make one job. A screenshot is kept for a person to look at.

Debian's chromium (make setup installs it) is driven by Playwright; Playwright's own browser
download is never used. Without the browser this fails under CI=true and skips elsewhere.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localrun.stack import LocalStack
from loopserver.testing import missing_service, wait_until

from . import documented
from .conftest import ROOT, Api

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

# 1024x1024 low takes 22 s of the service's time: 4.4 s here, long enough to watch it run
# (previews come from 18 % to 80 % of it) and short enough for a test.
STACK = {"time_scale": 5.0}

CHROMIUM = Path("/usr/bin/chromium")
# This machine's closed network refuses Chromium's own background connections (updates, sync,
# QUIC probes...): these keep it from trying, so nothing waits on them.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / ".local" / "test-artifacts"
SCREENSHOT = ARTIFACTS / "web-page.png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIRST_PROMPT = "a lighthouse on a cliff at dawn, watercolour"
SECOND_PROMPT = "a paper boat on a puddle, macro photograph"
JOB_S = 60.0  # the longest a job here may take, with room for a slow machine


class Browser:
    """One Chromium page on the stack's web page, with what it asked the network for and
    every console error it met."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.requests: list[Any] = []
        self.errors: list[str] = []
        page.on("request", self._on_request)
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_request(self, request: Any) -> None:
        self.requests.append(request)

    def _on_console(self, message: Any) -> None:
        if message.type == "error":  # a refusal by the page's CSP is one of these
            self.errors.append(str(message.text))

    def _on_page_error(self, error: Any) -> None:
        self.errors.append(str(error))

    def starts(self) -> list[Any]:
        return [
            r
            for r in self.requests
            if r.method == "POST" and re.search(r"/api/images/?$", r.url.split("?")[0])
        ]

    def text(self, selector: str) -> str:
        return str(self.page.inner_text(selector))

    def job_id(self) -> str:
        return self.text("#job-id").strip()

    def image_ready(self, selector: str) -> bool:
        return bool(
            self.page.evaluate(
                "(s) => [...document.querySelectorAll(s)].some("
                "(i) => i.complete && i.naturalWidth > 0)",
                selector,
            )
        )

    def watch_until_saved(self) -> tuple[list[str], bool]:
        """Every state sentence the page showed until its final image was on screen, and
        whether a preview showed before it."""
        sentences: list[str] = []
        preview_first = False

        def saved() -> bool:
            nonlocal preview_first
            sentence = self.text("#state-text")
            if sentence and (not sentences or sentences[-1] != sentence):
                sentences.append(sentence)
            final = self.image_ready("#final img")
            preview_first = preview_first or (not final and self.image_ready("#previews img"))
            return final

        wait_until(saved, timeout=JOB_S, interval=0.05, what="the final image on the page")
        return sentences, preview_first


@pytest.fixture(scope="module")
def browser(stack: LocalStack) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        missing_service(
            "Chromium (/usr/bin/chromium)", "run `make setup` (apt-get install chromium, as root)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_service("Playwright", "run `make setup` (requirements-dev.txt pins it)")
        raise
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))  # a fresh --user-data-dir
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(profile),
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 1500},
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(JOB_S * 1000)
                page.goto(f"{stack.devhost_url}/api/ui")
                yield Browser(page)
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def generations(api: Api, since: int) -> int:
    return sum(1 for entry in api.ledger(since) if entry["generation_started"])


def test_the_page_is_served_as_itself(browser: Browser, stack: LocalStack):
    # Anonymously (no key), through the host: the redirect to the folder, then the page with a
    # policy that lets images come from this stack's Azurite only. Each answer is also held
    # against the OpenAPI document (status, content type, headers).
    anonymous = httpx.Client(
        base_url=stack.devhost_url, timeout=30, event_hooks={"response": [documented.check]}
    )
    moved = anonymous.get("/api/ui")
    assert moved.status_code == 308
    assert moved.headers["location"] == "ui/"
    served = anonymous.get("/api/ui/")
    assert served.status_code == 200
    assert served.headers["content-type"] == "text/html; charset=utf-8"
    policy = served.headers["content-security-policy"]
    assert f"img-src http://127.0.0.1:{stack.azurite_port};" in policy
    again = anonymous.get("/api/ui/app.js", headers={"if-none-match": served.headers["etag"]})
    assert again.status_code == 200  # another file, another tag
    etag = again.headers["etag"]
    cached = anonymous.get("/api/ui/app.js", headers={"if-none-match": etag})
    assert cached.status_code == 304
    assert anonymous.get("/api/ui/style.css").headers["content-type"] == "text/css; charset=utf-8"
    assert anonymous.get("/api/ui/nothing.js").status_code == 404

    page = browser.page
    assert page.url == f"{stack.devhost_url}/api/ui/"  # /api/ui redirects to the folder
    assert page.title() == "Image jobs"
    # Before a key is set the page says so; the key then stays in this tab only.
    assert "No key yet" in browser.text("#key-status")
    page.fill("#key", stack.function_key)
    page.click("#use-key")
    assert "A key is set" in browser.text("#key-status")
    assert page.evaluate("sessionStorage.getItem('imagejobs.functionKey')") == stack.function_key
    assert page.input_value("#key") == ""
    assert stack.function_key not in page.url
    # Only the formats the default route takes (the sample's azure: no webp) are offered.
    page.wait_for_selector(
        "select[name=output_format] option[value=webp][disabled]", state="attached"
    )
    offered = page.eval_on_selector_all(
        "select[name=output_format] option:not([disabled])", "options => options.map(o => o.value)"
    )
    assert offered == ["png", "jpeg"]


def test_a_job_from_the_page_shows_previews_the_image_and_reports_its_times(
    browser: Browser, api: Api, stack: LocalStack
):
    page = browser.page
    page.fill("#prompt", FIRST_PROMPT)
    page.select_option("select[name=size]", "1024x1024")
    page.select_option("select[name=quality]", "low")
    page.select_option("select[name=output_format]", "png")
    page.fill("input[name=partial_images]", "2")
    mark = api.ledger_mark()
    page.click("#start")

    sentences, preview_first = browser.watch_until_saved()
    job_id = browser.job_id()
    assert job_id.startswith("img-")
    # The state and its sentence changed as the job went: started, then the service's own words.
    assert sentences[0] == "Started: waiting for its first status."
    assert len(sentences) >= 2, sentences
    assert page.get_attribute("#state", "data-state") == "saved"
    # A preview showed while the job ran, before the final image, which is the job's size.
    assert preview_first, sentences
    assert page.locator("#previews img").count() >= 1
    assert browser.image_ready("#previews img")
    assert page.evaluate("document.querySelector('#final img').naturalWidth") == 1024
    # The page never started a second job while it watched this one.
    assert len(browser.starts()) == 1
    assert generations(api, mark) == 1

    # The page's own times reach the job's metadata.json, and the waterfall draws them.
    page.wait_for_selector("#report[data-reported=true]", timeout=JOB_S * 1000)
    metadata: dict[str, Any] = json.loads(api.blob_text(f"{job_id}/metadata.json"))
    client = metadata["client"]
    assert set(client) == {"download_ms", "render_ms", "reported_at"}
    assert isinstance(client["render_ms"], int)
    assert client["render_ms"] >= 0
    assert isinstance(client["download_ms"], int)
    assert client["download_ms"] >= 0
    assert f"render {client['render_ms']} ms" in browser.text("#report")
    assert metadata["state"] == "saved"
    assert metadata["final_image_ms"] is not None  # the finish activity's record, kept whole
    for clock in ("queue", "first-byte", "first-partial", "final-image", "download", "render"):
        bars = page.locator(f"#waterfall [data-clock={clock}] .bar")
        assert bars.count() == 1, clock
    assert re.fullmatch(r"\d+ ms", browser.text("#waterfall [data-clock=render] .value").strip())

    # No prompt in any URL the page asked for; the key only ever in a header.
    for request in browser.requests:
        assert "lighthouse" not in request.url
        assert stack.function_key not in request.url
    # The strict policy refused nothing the page does (nothing inline, images from the store).
    assert browser.errors == []

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.is_file()
    assert SCREENSHOT.read_bytes()[:8] == PNG_SIGNATURE


def test_a_double_click_and_a_click_while_it_runs_make_one_job(browser: Browser, api: Api):
    page = browser.page
    first_job = browser.job_id()
    page.fill("#prompt", SECOND_PROMPT)  # another request: a key of its own
    mark = api.ledger_mark()
    before = len(browser.starts())
    page.dblclick("#start")
    wait_until(
        lambda: browser.job_id() not in ("", first_job), timeout=JOB_S, what="the new job shown"
    )
    job_id = browser.job_id()
    # The form unchanged, the job still running: a click names the same job again.
    assert page.get_attribute("#state", "data-state") not in ("saved", "failed", "cancelled")
    page.click("#start")
    wait_until(
        lambda: "no second job" in browser.text("#report"),
        timeout=JOB_S,
        what="the page saying the start named the job shown",
    )
    browser.watch_until_saved()
    assert browser.job_id() == job_id
    starts = browser.starts()[before:]
    assert 1 <= len(starts) <= 3
    # Every start the clicks sent carried one key: to the service, one request, one job.
    keys = {request.headers["idempotency-key"] for request in starts}
    assert len(keys) == 1
    assert generations(api, mark) == 1
    page.wait_for_selector("#report[data-reported=true]", timeout=JOB_S * 1000)
    assert browser.errors == []
