"""WebEnv in a real Chromium on small local pages: actions, errors as observations, BrowserGym strings,
tabs, and the two defences (the navigation guard, a fresh context per episode) attacked."""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import require

from orchard_envs.envs.tools import ActionError
from orchard_envs.envs.verdict import Verdict
from orchard_envs.web.actions import parse_browsergym
from orchard_envs.web.axtree import parse_axtree
from orchard_envs.web.guard import Guard, origin_of
from orchard_envs.web.runtime import find_chromium

PAGES = {
    "/": """<title>Home</title><h1>Home</h1>
<label>Name <input id=name></label>
<select aria-label=Size><option>Small</option><option>Large</option></select>
<button id=vanish onmousedown="this.remove()">Vanish</button>
<button disabled>Never</button>
<button onclick="document.title = 'clicked ' + document.getElementById('name').value">Go</button>
<button onclick="window.open('/two')">Popup</button>
<a href="/two">Two</a>
<a href="SECRET/steal?via=link">Away</a>
<button onclick="fetch('SECRET/steal?via=fetch').catch(() => {})">Leak</button>
<button onclick="new Image().src = 'SECRET/steal?via=img'">Pixel</button>
<button onclick="location = 'SECRET/steal?via=script'">Jump</button>
<button onclick="localStorage.setItem('k', 'v'); document.cookie = 'c=1; max-age=3600'">Remember</button>
""",
    "/two": "<title>Two</title><p>Second page</p>",
    "/sw.js": "self.addEventListener('fetch', (event) => event.respondWith(new Response('forged')));",
}


class _Pages(http.server.BaseHTTPRequestHandler):
    hits: list[str]
    pages: dict[str, str] = {}

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = self.pages.get(self.path.split("?")[0], "<title>secret</title>secret").encode()
        self.send_response(200)
        kind = "text/javascript" if self.path.endswith(".js") else "text/html"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def _serve(pages: dict[str, str]) -> tuple[http.server.ThreadingHTTPServer, list[str]]:
    hits: list[str] = []
    handler = type("Handler", (_Pages,), {"hits": hits, "pages": pages})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hits


@dataclass(frozen=True)
class _Task:
    task_id: str = "local.home"
    instruction: str = "Explore."

    def to_info(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "suite": "local", "split": "test"}


class _Host:
    """The allowed site (PAGES) and, on another loopback port, a 'secret' origin the agent must not reach."""

    def __init__(self) -> None:
        self.secret, self.secret_hits = _serve({})
        secret = f"http://127.0.0.1:{self.secret.server_address[1]}"
        self.site, self.hits = _serve({path: html.replace("SECRET", secret) for path, html in PAGES.items()})
        self.base = f"http://127.0.0.1:{self.site.server_address[1]}"

    def start(self) -> _Host:
        return self

    def reset(self, task: _Task) -> str:
        return self.base + "/"

    def origins(self) -> list[str]:
        return [self.base]

    def grade(self, task, *, page_url, answer, infeasible_reason, page=None) -> Verdict:
        passed = answer == "42"
        return Verdict(status="passed" if passed else "failed", reward=float(passed), resolved=passed)

    def close(self) -> None:
        for server in (self.site, self.secret):
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def env():
    require(find_chromium() is not None, "Chromium is not installed (apt-get install chromium)")
    from orchard_envs.envs.web import WebEnv

    class LocalWebEnv(WebEnv):
        def _suite_tasks(self, split):
            return [_Task()]

        def _new_host(self):
            return _Host()

    web = LocalWebEnv(suite="local", screen_size=(640, 480), action_timeout_ms=1000)
    yield web
    web.close()


def _bid(text: str, role: str, name: str) -> str:
    return next(node.bid for node in parse_axtree(text) if node.role == role and node.name == name)


def _step(env, action) -> tuple[str, dict]:
    obs, _, terminated, truncated, info = env.step(action)
    assert not terminated and not truncated and env.observation_space.contains(obs)
    return obs["text"], info


def test_actions_change_the_page_and_bids_stay_put(env):
    obs, info = env.reset(seed=0)
    text = obs["text"]
    assert obs["screenshot"].shape == (480, 640, 3) and obs["screenshot"].std() > 0  # a page, not black
    assert info["instruction"].startswith("Explore.") and "URL: http://127.0.0.1:" in text
    field, go = _bid(text, "textbox", "Name"), _bid(text, "button", "Go")
    text, _ = _step(env, {"name": "fill", "arguments": {"bid": field, "text": "Ada"}})
    assert f'[{field}] textbox "Name" value=Ada' in text
    text, _ = _step(env, f"click('{go}')")  # a BrowserGym action string
    assert "'clicked Ada'" in text and _bid(text, "button", "Go") == go
    text, _ = _step(env, f"select_option('{_bid(text, 'combobox', 'Size')}', 'Large')")
    assert 'combobox "Size" value=Large' in text
    text, _ = _step(env, f"click('{_bid(text, 'button', 'Popup')}')")
    assert "Tabs: 0 'clicked Ada'" in text and "1* 'Two'" in text and "Second page" in text
    text, _ = _step(env, {"name": "tab_focus", "arguments": {"index": 0}})
    assert "0* 'clicked Ada'" in text
    obs, reward, terminated, _, info = env.step({"name": "done", "arguments": {"answer": "42"}})
    assert terminated and reward == 1.0 and info["grading"]["status"] == "passed"


def test_mistakes_and_failures_are_observations_not_exceptions(env):
    obs, _ = env.reset(seed=0)
    text = obs["text"]
    cases = {
        "click('999')": "no element with bid '999'",
        "click('no such')": "is not an element id",
        f"click('{_bid(text, 'button', 'Never')}')": "timed out after 1000 ms",  # disabled: never clickable
        f"click('{_bid(text, 'button', 'Vanish')}')": "",  # removed mid-click: anything but a raise
        "fill('1', 'x')": "Error:",  # not a text field
        "scroll(0, 'down')": "Error:",
        "tab_focus(7)": "there is no tab 7",
        "upload_file('3', '/etc/passwd')": "unknown BrowserGym action 'upload_file'",
        "click(": "neither JSON",
        "__import__('os').system('id')": "one function call",
        "click(open('/etc/passwd'))": "must be literals",
        '{"name": "drag", "arguments": {"x": 1}}': "give either bid or both",
    }
    for action, expected in cases.items():
        text, _ = _step(env, action)
        assert expected in text, (action, text[:300])
    _step(env, "tab_close()")  # the last tab: a blank one takes its place
    text, _ = _step(env, "click('1')")
    assert "URL: about:blank" in text and "Error: no element" in text
    env.unwrapped.truncate()


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "chrome://settings", "data:text/html,<b>x</b>", "javascript:alert(1)", "SECRET/x"],
)
def test_goto_outside_the_allowed_origins_is_refused(env, url):
    env.reset(seed=0)
    host = env.unwrapped._host
    url = url.replace("SECRET", f"http://127.0.0.1:{host.secret.server_address[1]}")
    text, info = _step(env, {"name": "goto", "arguments": {"url": url}})
    assert (
        text.startswith("Error: navigation to") and "is blocked" in text and info["error"] == "action_failed"
    )
    assert f"URL: {host.base}/" in text and host.secret_hits == []
    env.unwrapped.truncate()


@pytest.mark.parametrize("button", ["Away", "Leak", "Pixel", "Jump"])
def test_the_page_cannot_reach_another_origin(env, button):
    """Attack: the page itself (a link, fetch, an image, a script navigation) goes to another loopback
    origin. Without the guard's route every one of these reaches the secret server."""
    obs, _ = env.reset(seed=0)
    host = env.unwrapped._host
    text, _ = _step(env, f"click('{_bid(obs['text'], 'link' if button == 'Away' else 'button', button)}')")
    text, _ = _step(env, {"name": "wait", "arguments": {"ms": 200}})  # let a late request go out
    assert host.secret_hits == [], host.secret_hits
    assert f"URL: {host.base}/" in text
    env.unwrapped.truncate()


def test_each_episode_starts_in_a_fresh_context(env):
    """Attack: an episode leaves a cookie and localStorage behind for the next one (to pass it answers,
    say). With one context reused across episodes the second episode reads them."""
    obs, _ = env.reset(seed=0)
    _step(env, f"click('{_bid(obs['text'], 'button', 'Remember')}')")
    page = env.unwrapped.session.page
    assert page.evaluate("() => [document.cookie, localStorage.getItem('k')]") == ["c=1", "v"]
    env.unwrapped.truncate()
    env.reset(seed=1)
    page = env.unwrapped.session.page
    assert page.evaluate("() => [document.cookie, localStorage.getItem('k')]") == ["", None]
    assert env.unwrapped.session.context.cookies() == []
    env.unwrapped.truncate()


def test_service_workers_cannot_register(env):
    """A service worker could answer the page's requests itself, where the guard's route never looks."""
    env.reset(seed=0)
    page = env.unwrapped.session.page
    outcome = page.evaluate(
        "() => navigator.serviceWorker ? navigator.serviceWorker.register('/sw.js')"
        ".then(() => 'registered', (e) => 'refused: ' + e) : 'no service workers'"
    )
    assert outcome != "registered"
    env.unwrapped.truncate()


def test_browsergym_strings_map_to_tool_calls():
    assert parse_browsergym("click('a51')") == {"name": "click", "arguments": {"bid": "a51"}}
    assert parse_browsergym("fill('b12', 'text')") == {
        "name": "fill",
        "arguments": {"bid": "b12", "text": "text"},
    }
    assert parse_browsergym("click('3', button='right', modifiers=['Shift'])")["arguments"] == {
        "bid": "3",
        "button": "right",
    }
    assert parse_browsergym("select_option('4', ['Large'])")["arguments"] == {"bid": "4", "option": "Large"}
    assert parse_browsergym("send_msg_to_user('42')") == {"name": "done", "arguments": {"answer": "42"}}
    assert parse_browsergym("press('5', 'Control+a')")["arguments"] == {"bid": "5", "key": "Control+a"}
    assert parse_browsergym("mouse_click(10, 20)") == {"name": "click", "arguments": {"x": 10, "y": 20}}
    assert parse_browsergym("noop()") == {"name": "wait", "arguments": {"ms": 1000}}
    with pytest.raises(ActionError, match="at most 1 positional"):
        parse_browsergym("hover('1', '2')")


def test_the_guard_compares_whole_origins():
    guard = Guard(["http://127.0.0.1:8000/shop"])
    assert guard.allows("http://127.0.0.1:8000/x?y") and guard.allows("about:blank")
    for url in (
        "http://127.0.0.1:8001/",
        "https://127.0.0.1:8000/",
        "http://localhost:8000/",
        "ftp://127.0.0.1:8000",
    ):
        assert not guard.allows(url) and guard.check_url(url)
    assert origin_of("http://[::1]/") == "http://[::1]:80" and origin_of("blob:x") == ""


def test_the_next_episodes_context_made_during_this_one_holds_nothing_of_it(env):
    """The next reset's context is made while this episode runs (a tab costs ~110 ms to open): what this
    episode stores after that, in cookies and localStorage, must not be in it."""
    obs, _ = env.reset(seed=0)
    spare = env.unwrapped._browser._spare[1]
    assert spare is not env.unwrapped.session.context
    _step(env, f"click('{_bid(obs['text'], 'button', 'Remember')}')")
    env.unwrapped.truncate()
    env.reset(seed=1)
    assert env.unwrapped.session.context is spare  # the one made ahead is the one in use
    page = env.unwrapped.session.page
    assert page.evaluate("() => [document.cookie, localStorage.getItem('k')]") == ["", None]
    assert spare.cookies() == [] and len(spare.pages) == 1
    env.unwrapped.truncate()


def test_a_focused_field_looks_the_same_whenever_the_screenshot_is_taken(env):
    """Screenshots go through CDP, which draws the blinking text caret (Playwright's own hides it): a frame
    of a focused input would depend on the moment it was taken. Chromium blinks every 500 ms, so five
    frames 150 ms apart span a whole on-off cycle."""
    obs, _ = env.reset(seed=0)
    _step(env, f"click('{_bid(obs['text'], 'textbox', 'Name')}')")
    session = env.unwrapped.session
    assert session.page.evaluate("() => document.activeElement.id") == "name"
    frames = []
    for _ in range(5):
        frames.append(session.screenshot_png())
        session.page.wait_for_timeout(150)
    assert all(frame == frames[0] for frame in frames)
    env.unwrapped.truncate()

