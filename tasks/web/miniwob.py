"""MiniWoB++ (`suite="miniwob"`): the HTML/JavaScript tasks of the `miniwob` package, served from loopback.

Each task page draws its problem from `Math.random`; `MiniWobHost.prepare` seeds it (`Math.seedrandom`,
which the page's core.js ships), starts the episode itself (`core.startEpisodeReal`, instead of the human
"START" cover), gives it a timer far longer than any episode and hides the displays meant for people (the
reward bar, the click canvas, the cover). The reward is the page's own: the episode is over once
`WOB_DONE_GLOBAL` is set, and scores 1.0 when the raw reward `WOB_RAW_REWARD_GLOBAL` is positive (the
time penalty in `WOB_REWARD_GLOBAL` is ignored), as BrowserGym scores MiniWoB.

The host has SiteHost's methods (start, reset, origins, grade, close), plus `prepare(task, page)` after the
page loads and `finished(page)`; its server is a thread of the env's process serving static files only.
"""

from __future__ import annotations

import functools
import http.server
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchard_envs.envs.verdict import Verdict
from orchard_envs.errors import ConfigError

SUITE = "miniwob"
EPISODE_MAX_MS = 1_000_000
READY_TIMEOUT_MS = 10_000

START_JS = """
(seed) => {
  Math.seedrandom(seed);
  core.EPISODE_MAX_TIME = EPISODE_MAX_MS;
  core.startEpisode = function () {};  // no "START" cover after the end: the env ends the episode
  core.startEpisodeReal();
  for (const id of ['reward-display', 'click-canvas', 'sync-task-cover']) {
    const el = document.getElementById(id);
    if (el) el.style.display = 'none';
  }
}
""".replace("EPISODE_MAX_MS", str(EPISODE_MAX_MS))
STATE_JS = "() => ({done: WOB_DONE_GLOBAL, raw: WOB_RAW_REWARD_GLOBAL, reason: String(WOB_REWARD_REASON)})"


@dataclass(frozen=True)
class MiniWobTask:
    """One MiniWoB++ task (its problem is drawn per episode from the seed)."""

    task_id: str  # "miniwob.click-button"
    name: str  # the page: html/miniwob/<name>.html
    suite: str = SUITE
    split: str = "all"
    family: str = "miniwob"
    instruction: str = ""  # the page's own utterance, read when the episode starts

    def to_info(self) -> dict[str, Any]:
        """What `info["task"]` shows."""
        return {"task_id": self.task_id, "suite": self.suite, "split": self.split, "family": self.family}


def html_root() -> Path:
    """The `miniwob` package's html folder; ConfigError naming the install command if it is missing."""
    try:
        import miniwob
    except ImportError:
        raise ConfigError(
            "suite 'miniwob' needs the miniwob package: pip install 'orchard-envs[gui]'"
        ) from None
    return Path(miniwob.__file__).parent / "html"


@functools.cache
def load_tasks() -> tuple[MiniWobTask, ...]:
    """Every task page in the package, sorted by name."""
    pages = sorted((html_root() / "miniwob").glob("*.html"))
    return tuple(MiniWobTask(f"miniwob.{page.stem}", page.stem) for page in pages)


def load_suite(split: str | None = None) -> list[MiniWobTask]:
    """The suite's tasks; its one split is 'all'."""
    if split not in (None, "all"):
        raise ConfigError(f"suite 'miniwob' has no split {split!r}; its split: all")
    return list(load_tasks())


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


class MiniWobHost:
    """The static server of the task pages on 127.0.0.1, and the grader that reads the page's reward."""

    def __init__(self) -> None:
        self._server: http.server.ThreadingHTTPServer | None = None
        self.base = ""

    def start(self) -> MiniWobHost:
        """Serve the html folder on a free loopback port (a daemon thread)."""
        handler = functools.partial(_Quiet, directory=str(html_root()))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="miniwob-http", daemon=True).start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def reset(self, task: MiniWobTask) -> str:
        """The task page's URL."""
        return f"{self.base}/miniwob/{task.name}.html"

    def origins(self) -> list[str]:
        """The one origin the pages load from."""
        return [self.base]

    def prepare(self, task: MiniWobTask, page: Any, seed: int) -> str:
        """Start the loaded page's episode with this seed; its instruction (the page's utterance)."""
        ready = "() => typeof core !== 'undefined' && typeof genProblem === 'function'"
        page.wait_for_function(ready, timeout=READY_TIMEOUT_MS)
        page.evaluate(START_JS, seed)
        page.wait_for_function("() => WOB_TASK_READY !== false", timeout=READY_TIMEOUT_MS)
        return str(page.evaluate("() => core.getUtterance()"))

    def finished(self, page: Any) -> bool:
        """The page ended its episode (a success or a failure)."""
        return bool(page.evaluate("() => WOB_DONE_GLOBAL"))

    def grade(
        self,
        task: MiniWobTask,
        *,
        page_url: str,
        answer: str | None,
        infeasible_reason: str | None,
        page: Any = None,
    ) -> Verdict:
        """1.0 when the page's raw reward is positive (BrowserGym's rule), else 0.0."""
        state = page.evaluate(STATE_JS) if page is not None else {"done": False, "raw": 0, "reason": ""}
        raw = float(state["raw"] or 0)
        passed = bool(state["done"]) and raw > 0
        if not state["done"]:
            reason = "the task page did not end its episode"
        else:
            reason = f"the page's raw reward is {raw:g}" + (
                f" ({state['reason']})" if state["reason"] not in ("null", "undefined") else ""
            )
        return Verdict(
            status="passed" if passed else "failed",
            reward=1.0 if passed else 0.0,
            resolved=passed,
            breakdown={"raw_reward": raw},
            reason=reason,
        )

    def close(self) -> None:
        """Stop the server (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
