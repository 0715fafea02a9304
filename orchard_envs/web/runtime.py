"""Chromium through Playwright's sync API: one browser per env, a fresh context per episode.

A launch costs about a second; a context (no cookies, storage, cache or permissions of any earlier
episode) costs milliseconds, so `Browser` stays open across episodes and `Browser.new_session` gives each
episode its own `Session`: the context, its tabs, and the navigation guard wired to every request.
The first tab of a context costs most of a reset (Chromium starts a renderer process for it, ~110 ms
here), so once an episode's first observation is out the next episode's context is made, unused, and
Chromium opens its tab while the episode runs (`_start`). An ended episode's context closes in the
background too, and the next reset waits for it before it resets the sites (`wait_closed`).
The Playwright sync API is bound to the thread that started it: use an env from one thread (vector envs
use processes). Chromium comes from Debian (`/usr/bin/chromium`, or `chromium=` / `ORCHARD_CHROMIUM`); as
root it needs `--no-sandbox` (see docs/security.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import shutil
import threading
import time
from typing import Any

import numpy as np

from orchard_envs.errors import BackendUnavailable
from orchard_envs.web.axtree import EXTRACT_JS, nodes_from_page, render_axtree
from orchard_envs.web.guard import Guard, launch_args

CHROMIUM_ENV = "ORCHARD_CHROMIUM"
# Runs before any page script, in every frame: a service worker could answer requests the route never sees.
NO_SERVICE_WORKERS_JS = """
Object.defineProperty(Navigator.prototype, 'serviceWorker', {get: () => undefined, configurable: false});
"""
# Screenshots go through CDP, which, unlike Playwright's screenshot, leaves a blinking text caret in: a
# frame would then depend on when it was taken. Every document hides it, as Playwright's screenshots do.
CARET_HIDDEN_JS = """
(() => {
  const style = document.createElement('style');
  style.textContent = '* { caret-color: transparent !important; }';
  const add = () => (document.head || document.documentElement).appendChild(style);
  if (document.documentElement) add(); else document.addEventListener('DOMContentLoaded', add);
})();
"""
TAKE_POPUPS_JS = "() => { const n = window.__orchardPopups || 0; window.__orchardPopups = 0; return n; }"
# Counts the tabs a page asks for (window.open, target=_blank links), so `settle` knows to wait for them.
COUNT_POPUPS_JS = """
(() => {
  window.__orchardPopups = 0;
  const open = window.open;
  window.open = function (...args) { window.__orchardPopups++; return open.apply(this, args); };
  document.addEventListener('click', (e) => {
    const a = e.target && e.target.closest && e.target.closest('a[target]');
    if (a && a.target !== '_self' && a.target !== '_top' && a.target !== '_parent') window.__orchardPopups++;
  }, true);
})();
"""

CAPTURE = {"format": "png", "optimizeForSpeed": True}  # the viewport, as the compositor last drew it


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium to launch: `explicit`, $ORCHARD_CHROMIUM, Debian's, or None (Playwright's own)."""
    for candidate in (explicit, os.environ.get(CHROMIUM_ENV), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


_THREAD = threading.local()


def _driver_acquire(start: Any) -> Any:
    """This thread's Playwright driver, started at its first user: Playwright's sync API allows one per
    thread (a second `start()` beside a running one fails), so envs in one thread share it, each with
    its own browser."""
    if getattr(_THREAD, "users", 0) == 0:
        _THREAD.driver = start().start()
    _THREAD.users = getattr(_THREAD, "users", 0) + 1
    return _THREAD.driver


def _driver_release() -> None:
    _THREAD.users -= 1
    if _THREAD.users == 0:
        driver, _THREAD.driver = _THREAD.driver, None
        with contextlib.suppress(Exception):  # already gone
            driver.stop()


def _start(owner: Any, call: Any) -> asyncio.Task:
    """Start a Playwright call without waiting for its reply: the sync API's event loop advances it during
    every later call, and Chromium works on it meanwhile. `call` is a coroutine of `owner._impl_obj` (the
    sync API has no call that returns before its reply); `_finish` it before using what it made."""
    return owner._loop.create_task(call)


def _finish(owner: Any, task: asyncio.Task) -> bool:
    """Wait for a call `_start`ed on `owner`'s loop; whether it succeeded (its failure is retrieved here,
    never left to be reported as an unawaited task's)."""
    try:
        owner._sync(task)
    except Exception:
        return False
    return True


class Browser:
    """One headless Chromium, launched at the first session and kept until `close`."""

    def __init__(self, *, chromium: str | None = None, headless: bool = True) -> None:
        self.chromium, self.headless = chromium, headless
        self._playwright: Any = None
        self._browser: Any = None
        self._closing: list[tuple[Any, asyncio.Task]] = []  # contexts closing in the background
        self._spare: tuple[tuple[int, int], Any, asyncio.Task] | None = None  # viewport, context, its tab

    def _launch(self) -> Any:
        if self._browser is None:
            from playwright.sync_api import sync_playwright

            args = launch_args() + (["--no-sandbox"] if os.geteuid() == 0 else [])
            self._playwright = _driver_acquire(sync_playwright)
            try:
                self._browser = self._playwright.chromium.launch(
                    executable_path=find_chromium(self.chromium), headless=self.headless, args=args
                )
            except Exception as exc:
                self.close()
                raise BackendUnavailable(
                    f"Chromium did not start ({exc}); install it (apt-get install chromium) or pass chromium="
                ) from exc
        return self._browser

    def new_session(
        self,
        origins: list[str],
        viewport: tuple[int, int],
        timeout_ms: int,
        headers: dict[str, str] | None = None,
    ) -> Session:
        """A fresh context whose requests only reach `origins` and carry `headers` (the task host's id of
        the episode); service workers and downloads are off."""
        context = self._take_spare(viewport)
        if context is None:
            context = self._new_context(viewport)
            context.new_page()
        if headers:
            context.set_extra_http_headers(headers)
        return Session(context, Guard(origins), timeout_ms)

    def make_spare(self, viewport: tuple[int, int]) -> None:
        """Make the next session's context now and let Chromium open its tab while the episode runs (call
        it once the observation is out: the tab's renderer competes with the page for the CPU)."""
        if self._spare is not None:
            return
        try:
            spare = self._new_context(viewport)
        except Exception:  # the browser died: the episode's next action says so; the next reset relaunches
            return
        self._spare = (viewport, spare, _start(spare, spare._impl_obj.new_page()))
        spare._sync(asyncio.sleep(0))  # one turn of the loop sends the request: Chromium starts now

    def end_session(self, session: Session) -> None:
        """Start closing an episode's context and every tab in it; `wait_closed` waits for it."""
        context = session.context
        self._closing.append((context, _start(context, context._impl_obj.close(reason=None))))

    def wait_closed(self) -> None:
        """Wait until every ended session's tabs are gone: call it before the sites are reset for the next
        episode, or a script of the last one (a timer, a late request) could still reach them."""
        closing, self._closing = self._closing, []
        for context, task in closing:
            _finish(context, task)

    def _new_context(self, viewport: tuple[int, int]) -> Any:
        context = self._launch().new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            service_workers="block",
            accept_downloads=False,
            java_script_enabled=True,
        )
        context.add_init_script(NO_SERVICE_WORKERS_JS)  # Playwright's "block" alone lets them register
        context.add_init_script(COUNT_POPUPS_JS)
        context.add_init_script(CARET_HIDDEN_JS)
        return context

    def _take_spare(self, viewport: tuple[int, int]) -> Any:
        """The spare context with its tab, if it is for this viewport and came up; else None."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        size, context, tab = spare
        if _finish(context, tab) and size == viewport and len(context.pages) == 1:
            return context
        with contextlib.suppress(Exception):  # the browser went away: a fresh one comes up instead
            context.close()
        return None

    def connected(self) -> bool:
        """The browser is running (False before the first session, or after it crashed)."""
        return self._browser is not None and self._browser.is_connected()

    def close(self) -> None:
        """Close the browser and Playwright (idempotent)."""
        browser, playwright, spare = self._browser, self._playwright, self._spare
        self._browser = self._playwright = self._spare = None
        with contextlib.suppress(Exception):  # already gone: nothing left to release
            if browser is not None:
                self.wait_closed()
                if spare is not None:
                    _finish(spare[1], spare[2])
                    spare[1].close()
                browser.close()
        if playwright is not None:
            _driver_release()


class Session:
    """One episode's browser context: its tabs (one active), the guard, and what the page looks like."""

    def __init__(self, context: Any, guard: Guard, timeout_ms: int) -> None:
        self.context, self.guard, self.timeout_ms = context, guard, timeout_ms
        context.set_default_timeout(timeout_ms)
        context.set_default_navigation_timeout(max(timeout_ms, 5000))
        context.route("**/*", self._route)
        self.active = 0
        self._cdp: dict[Any, Any] = {}  # a CDP session per tab, for screenshots
        self._asked = self._arrived = 0  # popups the pages asked for, and popups that opened
        if not context.pages:
            context.new_page()
        context.on("page", self._opened)  # a popup the page opens becomes the active tab

    def _opened(self, page: Any) -> None:
        if page.opener() is not None:
            self._arrived += 1
        pages = self.pages
        if page in pages:
            self.active = pages.index(page)

    def _route(self, route: Any, request: Any) -> None:
        if self.guard.allows(request.url):
            route.continue_()
        else:
            self.guard.note(request.url, request.is_navigation_request())
            route.abort("blockedbyclient")

    @property
    def pages(self) -> list[Any]:
        """The open tabs, in the order they opened."""
        return [page for page in self.context.pages if not page.is_closed()]

    @property
    def page(self) -> Any:
        """The active tab (a new blank one if every tab was closed)."""
        pages = self.pages
        if not pages:
            self.context.new_page()
            pages = self.pages
        self.active = min(self.active, len(pages) - 1)
        return pages[self.active]

    def settle(self) -> None:
        """After an action: follow a tab the page opened, and send any tab that reached a URL outside the
        allowed origins (something the route cannot see) back to about:blank."""
        self._await_popups()
        for page in self.pages:
            if not self.guard.allows(page.url):
                self._send_back(page)
        with contextlib.suppress(Exception):  # a slow page is observed as it is
            self.page.wait_for_load_state("domcontentloaded", timeout=self.timeout_ms)

    def _await_popups(self) -> None:
        """Wait (up to the action timeout) for the tabs the pages asked for to appear: a popup's `page`
        event can come after the click that opened it returns."""
        for page in self.pages:
            with contextlib.suppress(Exception):  # a page mid-navigation asked for nothing yet
                self._asked += int(page.evaluate(TAKE_POPUPS_JS))
        deadline = time.monotonic() + self.timeout_ms / 1000
        while self._arrived < self._asked and time.monotonic() < deadline:
            self.page.wait_for_timeout(20)  # lets Playwright deliver the pending events
        self._asked = self._arrived = min(self._asked, self._arrived)

    def _send_back(self, page: Any) -> None:
        """A tab on a URL the episode may not show (the error page of a blocked navigation, a scheme the
        route never sees): back to where it was, else about:blank."""
        if not page.url.startswith("chrome-error:"):
            self.guard.note(page.url, True)
        with contextlib.suppress(Exception):
            page.go_back()
        if not self.guard.allows(page.url):
            page.goto("about:blank")

    def screenshot_png(self) -> bytes:
        """The active tab's viewport as PNG, through CDP: Playwright's screenshot costs ~20 ms more (it
        waits for fonts and restyles every frame to hide the caret, which CARET_HIDDEN_JS does instead),
        and a speed-optimised PNG decodes faster. Bounded by the action timeout, as Playwright's is."""
        return self._finish_capture(self._start_capture())

    def observe(self, ax_tree: bool) -> tuple[str, bytes | None]:
        """`describe` and the screenshot together: Chromium draws the frame while the page's script reads
        the tree. The PNG is None when no frame came (a tab mid-close)."""
        try:
            capture = self._start_capture()
        except Exception:  # the tab went away: the text says where the episode is
            return self.describe(ax_tree), None
        text = self.describe(ax_tree)
        try:
            return text, self._finish_capture(capture)
        except Exception:
            return text, None

    def _start_capture(self) -> tuple[Any, asyncio.Task]:
        page = self.page
        if page not in self._cdp:
            self._cdp[page] = self.context.new_cdp_session(page)
        cdp = self._cdp[page]
        return page, _start(cdp, cdp._impl_obj.send("Page.captureScreenshot", CAPTURE, self.timeout_ms))

    def _finish_capture(self, capture: tuple[Any, asyncio.Task]) -> bytes:
        page, task = capture
        return base64.b64decode(page._sync(task)["data"])

    def describe(self, ax_tree: bool) -> str:
        """URL, tabs, focused element, and (by option) the AX tree, as the observation's text."""
        page = self.page
        tabs = " | ".join(
            f"{i}{'*' if i == self.active else ''} {_title(p)!r} {p.url}" for i, p in enumerate(self.pages)
        )
        lines = [f"URL: {page.url}", f"Tabs: {tabs}"]
        tree = ""
        try:
            found = page.evaluate(EXTRACT_JS, "")
            lines.append(f"Focused: [{found['focused']}]" if found["focused"] else "Focused: none")
            tree = render_axtree(nodes_from_page(found["nodes"])) if ax_tree else ""
        except Exception as exc:  # a page mid-navigation has no document to read
            lines.append(f"(the page could not be read: {_short(exc)})")
        return "\n".join(lines) + (f"\nAX tree:\n{tree}" if tree else "")


def _title(page: Any) -> str:
    try:
        return page.title()
    except Exception:
        return ""


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def decode_png(png: bytes) -> np.ndarray:
    """PNG bytes as an H x W x 3 uint8 array."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))
