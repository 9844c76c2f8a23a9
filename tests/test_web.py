"""The web page in headless Chromium (Debian chromium + chromium-driver, driven by Selenium).

Drop an image on the page, submit a plan, watch the graph's nodes finish, see the answer and
the output image (and audio, where the TTS model is installed); a screenshot goes to tmp_path.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_api import ThreadServer, api_settings_for_tests, image_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                                                else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="Debian chromium and chromium-driver are not installed "
                                       "(apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def web(stack, settings) -> Iterator[ThreadServer]:  # type: ignore[no-untyped-def]
    from planner_service.api import create_api

    server = ThreadServer(create_api(settings, api_settings_for_tests())).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def web_key(settings) -> str:  # type: ignore[no-untyped-def]
    from planner_service.auth import ApiKeys
    from shared.redis_conn import text_redis

    key, _ = ApiKeys(text_redis(settings.redis_url), settings.key_prefix).create(f"web-{uuid.uuid4().hex[:6]}")
    return key


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1400,1000", "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, check: Any, timeout_s: float = 60, what: str = "condition") -> Any:
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except StaleElementReferenceException:  # the live graph re-rendered between find and read: look again
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not met after {timeout_s}s; page errors: "
                         f"{driver.find_element('id', 'error').text!r}")


DROP_JS = """
const [name, b64, mime] = arguments;
const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
const dt = new DataTransfer();
dt.items.add(new File([bytes], name, {type: mime}));
const zone = document.getElementById('dropzone');
for (const type of ['dragenter', 'dragover', 'drop']) {
  zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
}
return document.querySelectorAll('#attachments li').length;
"""


def _send_with_plan(d: Any, plan: list[dict[str, Any]], prompt: str) -> Any:
    """Type an explicit plan and a request into the page, send them, and return the new turn."""
    from selenium.webdriver.common.by import By

    d.find_element(By.CSS_SELECTOR, "#plan-box summary").click()
    d.find_element(By.ID, "plan").send_keys(json.dumps(plan))
    d.find_element(By.ID, "prompt").send_keys(prompt)
    d.find_element(By.ID, "send").click()
    return _wait(d, lambda: d.find_elements(By.CSS_SELECTOR, "section.turn"), 20, "the turn")[0]


def _tts_available() -> bool:
    try:
        from workers.audio.experts import PiperTTS

        return PiperTTS.unavailable_reason() is None
    except Exception:  # noqa: BLE001
        return False


def test_web_page_upload_plan_live_graph_answer(web: ThreadServer, web_key: str, browser: Any,
                                                 tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    d = browser
    d.get(web.url + "/")
    assert d.title == "hgq"
    _wait(d, lambda: d.find_element(By.ID, "ready").text == "ready", 20, "readyz badge")
    d.find_element(By.ID, "api-key").send_keys(web_key)
    d.find_element(By.ID, "key-save").click()

    # drag and drop an image onto the page
    assert d.execute_script(DROP_JS, "photo.png", base64.b64encode(image_bytes()).decode(), "image/png") == 1
    assert d.find_element(By.CSS_SELECTOR, "#attachments li").get_attribute("data-name") == "photo.png"

    tts = _tts_available()
    plan: list[dict[str, Any]] = [
        {"id": 0, "task": "image-to-image", "dep": [-1], "args": {"image": "photo.png", "style": "gray"}},
        {"id": 1, "task": "diag-vision", "dep": [-1], "args": {"text": "a", "seconds": 1.5}},
        {"id": 2, "task": "diag-text", "dep": [1], "args": {"text": "<GENERATED>-1", "seconds": 0.5}},
    ]
    if tts:
        plan.append({"id": 3, "task": "text-to-speech", "dep": [-1], "args": {"text": "Hello from hgq."}})
    turn = _send_with_plan(d, plan, "Make photo.png gray and run the diagnostics")
    rid = turn.get_attribute("data-request-id")
    assert turn.find_element(By.CSS_SELECTOR, ".msg.user img").get_attribute("alt") == "photo.png"

    # the live graph: a node is seen running (with its model) before the run is over
    def running_node() -> Any:
        nodes = turn.find_elements(By.CSS_SELECTOR, ".graph g.node.running")
        return nodes[0].text if nodes else None

    running_text = _wait(d, running_node, 30, "a running node in the graph")
    assert "hgq/diag-" in running_text or "pillow" in running_text or "piper" in running_text
    assert turn.get_attribute("data-status") not in ("succeeded", "failed", "cancelled")
    d.save_screenshot(str(tmp_path / "web-running.png"))

    _wait(d, lambda: turn.get_attribute("data-status") == "succeeded", 90, "the run to succeed")
    answer = _wait(d, lambda: turn.find_element(By.CSS_SELECTOR, ".answer").text, 10, "the answer")
    assert answer.startswith("ANSWER")

    def finished_graph() -> Any:  # read inside _wait: a late event may re-render the graph under us
        nodes = turn.find_elements(By.CSS_SELECTOR, ".graph g.node")
        if len(nodes) == len(plan) and all(n.get_attribute("data-status") == "succeeded" for n in nodes):
            return turn.find_element(By.CSS_SELECTOR, '.graph g.node[data-node="1"]').text
        return None

    node1 = _wait(d, finished_graph, 10, "every node of the graph shown succeeded")
    assert "hgq/diag-vision" in node1 and "succeeded" in node1 and "s" in node1.split("·")[-1]
    seconds = float(node1.split("·")[-1].strip().rstrip("s"))
    assert 1.4 <= seconds < 5, node1  # the node's own time, from the event stream / run view

    img = _wait(d, lambda: turn.find_elements(By.CSS_SELECTOR, ".artifacts img"), 20, "the output image")[0]
    _wait(d, lambda: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img), 10,
          "the image to load")
    assert d.execute_script("return arguments[0].naturalWidth", img) == 160
    if tts:
        audio = _wait(d, lambda: turn.find_elements(By.CSS_SELECTOR, ".artifacts audio"), 20, "the audio")[0]
        duration = _wait(d, lambda: d.execute_script(
            "const a = arguments[0]; return a.readyState >= 1 && a.duration", audio), 10, "audio metadata")
        assert duration > 0.3

    # history lists the request; a reload brings it back from the server
    _wait(d, lambda: d.find_elements(By.CSS_SELECTOR, f'#history li[data-request-id="{rid}"]'), 10, "history")
    d.execute_script("arguments[0].scrollIntoView({block: 'end'})", turn.find_element(By.CSS_SELECTOR, ".artifacts"))
    d.save_screenshot(str(tmp_path / "web-done.png"))
    d.refresh()
    entry = _wait(d, lambda: d.find_elements(By.CSS_SELECTOR, f'#history li[data-request-id="{rid}"]'), 10,
                  "history after reload")[0]
    entry.click()
    again = _wait(d, lambda: d.find_elements(By.CSS_SELECTOR, f'section.turn[data-request-id="{rid}"]'), 10,
                  "the reopened run")[0]
    _wait(d, lambda: again.find_element(By.CSS_SELECTOR, ".answer").text.startswith("ANSWER"), 10, "old answer")
    assert len(again.find_elements(By.CSS_SELECTOR, ".graph g.node.succeeded")) == len(plan)
    print(f"screenshots: {tmp_path / 'web-running.png'} {tmp_path / 'web-done.png'}")


def test_web_page_plain_question_and_errors(web: ThreadServer, web_key: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    d = browser
    d.get(web.url + "/")
    d.execute_script("localStorage.setItem('hgq.key', arguments[0])", web_key)
    d.refresh()
    d.find_element(By.ID, "prompt").send_keys("Hello there")
    d.find_element(By.ID, "send").click()
    turn = _wait(d, lambda: d.find_elements(By.CSS_SELECTOR, "section.turn"), 20, "the turn")[0]
    _wait(d, lambda: turn.get_attribute("data-status") == "succeeded", 60, "the run")
    _wait(d, lambda: "ANSWER for: Hello there" in turn.find_element(By.CSS_SELECTOR, ".answer").text, 10, "answer")
    assert turn.find_elements(By.CSS_SELECTOR, ".graph g.node") == []  # planned no tasks
    # a bad plan is refused with the field named; a text file is refused on the client side
    d.find_element(By.CSS_SELECTOR, "#plan-box summary").click()
    d.find_element(By.ID, "plan").send_keys('[{"id": 0, "task": "make-coffee"}]')
    d.find_element(By.ID, "prompt").send_keys("coffee")
    d.find_element(By.ID, "send").click()
    err = _wait(d, lambda: d.find_element(By.ID, "error").text, 10, "an error")
    assert err.startswith("plan:") and "make-coffee" in err
    d.execute_script(DROP_JS, "notes.txt", base64.b64encode(b"hello").decode(), "text/plain")
    assert "only images and audio" in d.find_element(By.ID, "error").text


def test_web_page_shows_outputs_early_markdown_details_and_fits_small_screens(  # type: ignore[no-untyped-def]
        web: ThreadServer, web_key: str, browser: Any, fake_llm, tmp_path: Path) -> None:
    import os

    from openai import OpenAI
    from selenium.webdriver.common.by import By

    shots = Path(os.environ.get("HGQ_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    # a run made through the chat endpoint (a chat UI's) stays out of this page's history
    chat = OpenAI(base_url=f"{web.url}/v1", api_key=web_key, max_retries=0).chat.completions.create(
        model="hgq", messages=[{"role": "user", "content": "from another chat UI"}],
        extra_body={"hgq_plan": [{"id": 0, "task": "diag-text", "dep": [-1], "args": {"text": "x"}}]})
    chat_id = chat.model_extra["hgq"]["request_id"]  # type: ignore[index]
    d = browser
    d.get(web.url + "/")
    # no key yet: the page says how to get one, in its own words
    d.find_element(By.CSS_SELECTOR, ".example").click()
    assert d.find_element(By.ID, "prompt").get_attribute("value").startswith("Transcribe the attached recording")
    d.find_element(By.ID, "send").click()
    err = _wait(d, lambda: d.find_element(By.ID, "error").text, 10, "the no-key error")
    assert "needs an API key" in err and "hgq keys create" in err
    assert d.execute_script("return document.querySelector('link[rel=icon]') !== null")  # no favicon 404

    d.find_element(By.ID, "api-key").send_keys(web_key)
    d.find_element(By.ID, "key-save").click()
    d.find_element(By.ID, "prompt").clear()
    assert d.execute_script(DROP_JS, "photo.png", base64.b64encode(image_bytes()).decode(), "image/png") == 1
    plan = [{"id": 0, "task": "image-to-image", "dep": [-1], "args": {"image": "photo.png", "style": "gray"}},
            {"id": 1, "task": "diag-text", "dep": [-1], "args": {"text": "slow", "seconds": 8}}]
    fake_llm.script("respond", "**Done.** The picture is now gray.\n- task 0: gray filter\n- task 1: `slow`")
    turn = _send_with_plan(d, plan, "gray it, slowly")
    rid = turn.get_attribute("data-request-id")
    _wait(d, lambda: d.find_elements(By.CSS_SELECTOR, f'#history li[data-request-id="{rid}"]'), 10, "history")
    assert not d.find_elements(By.CSS_SELECTOR, f'#history li[data-request-id="{chat_id}"]')

    # the gray picture appears while task 1 is still running
    _wait(d, lambda: turn.find_elements(By.CSS_SELECTOR, ".artifacts img"), 20, "the early output image")
    assert turn.get_attribute("data-status") == "running"
    # a click on a node shows its details
    # (the graph is redrawn 4 times a second while a task runs: find and click in one go, again if stale)
    _wait(d, lambda: turn.find_element(By.CSS_SELECTOR, '.graph g.node[data-node="0"]').click() or True, 10,
          "a click on task 0")
    details = _wait(d, lambda: turn.find_element(By.CSS_SELECTOR, ".node-details").text, 10, "node details")
    assert "image-to-image" in details and "model" in details and "gray" in details

    _wait(d, lambda: turn.get_attribute("data-status") == "succeeded", 60, "the run")
    answer = turn.find_element(By.CSS_SELECTOR, ".answer")
    _wait(d, lambda: answer.find_elements(By.CSS_SELECTOR, "strong"), 10, "rendered markdown")
    assert answer.find_element(By.CSS_SELECTOR, "strong").text == "Done."
    assert [li.text for li in answer.find_elements(By.CSS_SELECTOR, "li")] == ["task 0: gray filter", "task 1: slow"]
    assert "**" not in answer.text

    for width in (360, 768, 1440):  # phone, tablet, desktop: nothing wider than the window
        d.set_window_size(width, 900)
        time.sleep(0.3)
        overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{width}px: the page is {overflow}px wider than the window"
        assert d.find_element(By.ID, "send").is_displayed() and d.find_element(By.ID, "api-key").is_displayed()
        d.save_screenshot(str(shots / f"web-{width}.png"))
    print(f"screenshots in {shots}")
