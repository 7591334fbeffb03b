"""`archc view` in a real headless Chromium (driven by Playwright), and `analyze --format dot`.

Chromium comes from the system packages (`apt-get install chromium`; .ci/run installs it):
without it these tests skip on a developer's machine and fail in CI (CI=true)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys

import pytest

import archc
from archc.presentation.dot import to_dot
from archc.presentation.view import ancestors, render_html, view_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _need(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI: .ci/run installs it")
    pytest.skip(f"{what} is not installed")


def chromium_path() -> str | None:
    return os.environ.get("ARCHC_CHROMIUM") or shutil.which("chromium") or \
        shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    path = chromium_path()
    if path is None:
        _need("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=path,
            args=CHROMIUM_ARGS, headless=True, viewport={"width": 1400, "height": 900})
        yield ctx
        ctx.close()


def open_page(browser, html: str, tmp_path):
    """Load the page from a file; returns (page, problems, requests)."""
    f = tmp_path / "net.html"
    f.write_text(html, encoding="utf-8")
    page = browser.new_page()
    problems, requests = [], []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    return page, problems, requests


def default_nodes(net) -> set:
    """What the page draws before any click: blocks collapsed, loops and splits expanded."""
    out = set()
    for name in [net.input] + net.layers():
        chain = ancestors(net, net.node(name).get("scope", ""))
        out.add(next((s for s in chain if net.scopes[s].kind == "block"), name))
    return out


@pytest.fixture(scope="module")
def se():
    return archc.analyze("se_sqnxt")


def test_page_loads_with_every_layer_offline(browser, se, tmp_path):
    page, problems, requests = open_page(browser, render_html(se), tmp_path)
    try:
        assert problems == []
        assert requests == [(tmp_path / "net.html").as_uri()]      # nothing else fetched
        names = page.eval_on_selector_all("tr.layer-row", "rs => rs.map(r => r.dataset.name)")
        assert names == [lc.name for lc in se.layers]               # every layer, in order
        drawn = set(page.eval_on_selector_all("#svg .node", "ns => ns.map(n => n.dataset.name)"))
        assert drawn == default_nodes(se.network)
        assert page.locator("#svg .node[data-kind='block']").count() == 8   # [1,2,4,1] blocks
        assert "403,692" in page.inner_text("#totals")
        assert page.inner_text("#count") == "206 of 206 layers"
    finally:
        page.close()


def test_expanding_and_collapsing_a_block(browser, se, tmp_path):
    page, problems, _ = open_page(browser, render_html(se), tmp_path)
    try:
        before = page.locator("#svg .node").count()
        assert page.locator("#svg .node[data-name='stage1.block1.add']").count() == 0
        page.click("#svg .node[data-name='stage1.block1']")
        # the block's own layers and its child blocks (conv1..conv5, se, shortcut) appear
        assert page.locator("#svg .node[data-name='stage1.block1.add']").count() == 1
        assert page.locator("#svg .node[data-name='stage1.block1.se']").get_attribute(
            "data-kind") == "block"
        assert page.locator("#svg .cluster[data-name='stage1.block1']").count() == 1
        assert page.locator("#svg .node").count() == before - 1 + 9
        # the residual add's inputs are drawn as residual edges
        assert page.locator("#svg path.edge.residual[data-to='l:stage1.block1.add']").count() == 2
        page.click("#svg .cluster-label[data-name='stage1.block1'] text")
        assert page.locator("#svg .node").count() == before
        assert problems == []
    finally:
        page.close()


def test_expand_all_draws_every_layer_and_edge(browser, se, tmp_path):
    page, problems, _ = open_page(browser, render_html(se), tmp_path)
    try:
        page.click("#expand-all")
        assert page.locator("#svg .node[data-kind='block']").count() == 0
        assert page.locator("#svg .node[data-kind='layer']").count() == len(se.layers) + 1
        assert page.locator("#svg path.edge").count() == se.network.graph.number_of_edges()
        assert page.locator("#svg path.edge.scale").count() == 2 * 8   # SE mul inputs
        assert problems == []
    finally:
        page.close()


def test_search_filters_rows_and_reveals_layers(browser, se, tmp_path):
    page, problems, _ = open_page(browser, render_html(se), tmp_path)
    try:
        page.fill("#search", "se.gate")
        assert page.locator("tr.layer-row:not(.hidden)").count() == 8
        assert page.locator("#svg .node.match").count() == 8       # the 8 collapsed blocks
        page.press("#search", "Enter")
        gates = page.eval_on_selector_all("#svg .node.match", "ns => ns.map(n => n.dataset.name)")
        assert sorted(gates) == sorted(n for n in se.network.layers() if n.endswith("se.gate"))
        page.fill("#search", "")
        assert page.locator("tr.layer-row:not(.hidden)").count() == len(se.layers)
        page.click("tr.layer-row[data-name='stage3.block4.conv2.conv']")
        assert page.locator("#svg .node.selected").get_attribute("data-name") == \
            "stage3.block4.conv2.conv"
        assert problems == []
    finally:
        page.close()


def test_bitops_columns(browser, tmp_path):
    from archc.compiler.bitops import bitops
    from archc.compiler.quant import load_quant
    net = archc.load("profitablenet")
    r = bitops(net, "table1", load_quant("profitablenet"))
    page, problems, _ = open_page(browser, render_html(archc.analyze(net), r), tmp_path)
    try:
        assert "mul bit-ops" in page.inner_text("#layers thead")
        assert f"{r.totals['score']:.5f}" in page.inner_text("#totals")
        assert problems == []
    finally:
        page.close()


# ---- without a browser ---------------------------------------------------------------------
def test_page_is_self_contained(se):
    html = render_html(se)
    assert "<script src" not in html and "<link" not in html
    assert re.findall(r"https?://[^\s\"')]+", html) == ["http://www.w3.org/2000/svg"]  # a name
    assert "sourceMappingURL" not in html
    data = view_data(se)
    assert len(data["layers"]) == len(se.layers) + 1
    assert {e[2] for e in data["edges"]} == {"data", "residual", "scale"}


def test_vendored_dagre_is_unchanged():
    folder = os.path.join(ROOT, "presentation", "_view")
    with open(os.path.join(folder, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    with open(os.path.join(folder, "dagre.min.js"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert digest in readme


def test_dot_has_every_layer_and_scope(se):
    text = to_dot(se)
    net = se.network
    for name in [net.input] + net.layers():
        assert f'\n  "{name}" [' in text or re.search(rf'\n\s+"{re.escape(name)}" \[', text)
    assert text.count("subgraph ") == len([s for s in net.scopes if s])
    assert text.count(" -> ") == net.graph.number_of_edges()
    if shutil.which("dot") is None:
        _need("graphviz (dot)")
    svg = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True,
                         check=True).stdout
    assert svg.count('class="node"') == len(net.layers()) + 1
    assert svg.count('class="cluster"') == len([s for s in net.scopes if s])


def test_cli_view_and_dot(tmp_path):
    out = tmp_path / "g.html"
    proc = subprocess.run([sys.executable, "-m", "archc", "view", "sqnxt", "-D", "width=0.5",
                           "-o", str(out)], check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("<!DOCTYPE html>")
    proc = subprocess.run([sys.executable, "-m", "archc", "analyze", "sqnxt", "--format", "dot"],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith('digraph "SqueezeNext"')
    bad = subprocess.run([sys.executable, "-m", "archc", "view", "sqnxt", "-D", "width=x",
                          "-o", str(tmp_path / "bad.html")], check=False, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad.html").exists()
