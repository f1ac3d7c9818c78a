"""Drive headless Chromium through the status page, in a process of its own: `python -m tests.browser.drive SPEC`.

SPEC is a JSON object: `url`, `chromium` (the browser's path), `screenshot` and `narrow_screenshot` (where to write
them), and optionally `wait_for`, [a key of what the page shows, a text it should come to contain], waited for
(up to `wait_seconds`) once the first read is done and `ready_file` written. What the
page showed and what went wrong is printed as one JSON object. The browser and Playwright's driver run in this
process and their own, never in a test process whose threads are counted.
"""

from __future__ import annotations

import json
import sys
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

from playwright.sync_api import ConsoleMessage, Page, Request, Response, sync_playwright

# What the page shows, read from the DOM: what a test compares with /status and `cyberevents score`.
READ = """() => {
  const text = (selector) => document.querySelector(selector)?.textContent.trim() ?? null;
  const figures = {};
  for (const row of document.querySelectorAll("#agent tr[data-figure]")) {
    figures[row.dataset.figure] = row.querySelector("td").textContent.trim();
  }
  const last = document.querySelector("#last-cycle");
  const kinds = {};
  for (const kind of document.querySelectorAll("#last-cycle [data-kind]")) kinds[kind.dataset.kind] = kind.textContent;
  return {
    readiness: text("#readiness"), state: text("#state"), on_time: text("#on-time"), read_at: text("#read-at"),
    backlog: {pending: text("#pending"), failed: text("#failed"), dead_lettered: text("#dead-lettered")},
    last_cycle: last ? {id: Number(last.dataset.cycle), kinds} : null,
    agent_title: text("#agent-title"), figures,
    summaries: [...document.querySelectorAll("#flagged td.summary")].map((cell) => cell.textContent),
    pwned: window.__pwned ?? null,
    timeline_marks: document.querySelectorAll("#cycles rect").length,
    scroll_width: document.documentElement.scrollWidth,
  };
}"""
# Where the sections a person looks at first end, in CSS pixels from the top.
BOTTOMS = """() => Object.fromEntries(["#now", "#backlog", "#cycles", "#agent tbody tr:last-child"].map((selector) => {
  const element = document.querySelector(selector);
  return [selector, element ? element.getBoundingClientRect().bottom : null];
}))"""


def watch(page: Page, problems: list[str]) -> None:
    """Every console error, uncaught exception, failed request and HTTP error the page meets."""

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    def failed(request: Request) -> None:
        problems.append(f"request failed: {request.url} ({request.failure})")

    def answered(response: Response) -> None:
        if response.status >= 400:
            problems.append(f"HTTP {response.status}: {response.url}")

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", failed)
    page.on("response", answered)
    page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))


def until_shown(page: Page, key: str, text: str, seconds: float) -> dict[str, Any]:
    """Read the page until what READ finds under `key` contains `text` (the page's own script refreshes it); a
    predicate run in the page would be code the page's CSP refuses to evaluate."""
    deadline = time.monotonic() + seconds
    shown: dict[str, Any]
    while text not in str((shown := page.evaluate(READ))[key]):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page never showed {text!r} in {key}: {shown[key]!r}")
        page.wait_for_timeout(250)
    return shown


def main(spec: dict[str, Any]) -> dict[str, Any]:
    problems: list[str] = []
    found: dict[str, Any] = {"problems": problems}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=spec["chromium"], args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        watch(page, problems)
        page.goto(spec["url"], wait_until="load")
        found["first"] = page.evaluate(READ)
        found["bottoms"] = page.evaluate(BOTTOMS)
        page.screenshot(path=spec["screenshot"])
        axe = files("axe_playwright_python").joinpath("axe.min.js").read_text()
        page.evaluate(axe)  # by the DevTools protocol, which the page's CSP does not govern
        page.evaluate("() => document.querySelectorAll('details').forEach((details) => { details.open = true; })")
        found["axe"] = page.evaluate(
            """async () => (await axe.run(document, {runOnly: ["wcag2a", "wcag2aa", "best-practice"]}))
                .violations.map((v) => ({id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" "))}))"""
        )
        if spec.get("wait_for"):
            Path(spec["ready_file"]).write_text("read")  # the test may now change what the page shows
            key, text = spec["wait_for"]
            found["after"] = until_shown(page, key, text, seconds=spec.get("wait_seconds", 60))
        page.set_viewport_size({"width": 400, "height": 800})
        found["narrow"] = page.evaluate(READ)
        page.screenshot(path=spec["narrow_screenshot"], full_page=True)
        blind = browser.new_page(java_script_enabled=False)
        watch(blind, problems)
        blind.goto(spec["url"], wait_until="load")
        found["without_scripts"] = blind.inner_text("main")
        browser.close()
    return found


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
