"""The screenshot of `archc view se_sqnxt` in docs/ (docs/view-se_sqnxt.png).

    python tools/view_screenshot.py [OUT.png]

Renders the page, opens it in the system's headless Chromium (Playwright drives it, as the
tests do), expands stage2.block1 and its SE block, and saves a 1400x1000 screenshot.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

import archc
from archc.presentation.view import render_html

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main(out: str) -> None:
    from playwright.sync_api import sync_playwright
    chromium = os.environ.get("ARCHC_CHROMIUM") or shutil.which("chromium")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        page_file = os.path.join(tmp, "se_sqnxt.html")
        with open(page_file, "w", encoding="utf-8") as f:
            f.write(render_html(archc.analyze("se_sqnxt")))
        ctx = p.chromium.launch_persistent_context(os.path.join(tmp, "profile"),
                                                   executable_path=chromium, args=ARGS,
                                                   headless=True,
                                                   viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        page.goto("file://" + page_file)
        page.wait_for_selector("body[data-ready='1']")
        page.click("#svg .node[data-name='stage2.block1']")
        page.click("#svg .node[data-name='stage2.block1.se']")
        page.locator("#svg .node[data-name='stage2.block1.se.gate']").scroll_into_view_if_needed()
        page.click("tr.layer-row[data-name='stage2.block1.se.gate']")
        page.screenshot(path=out)
        ctx.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join("docs", "view-se_sqnxt.png"))
