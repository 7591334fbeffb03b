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


@pytest.mark.slow   # a browser
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


# A newcomer's network whose block calls are long (GhostNet-style): their titles must be read whole
GHOSTLIKE = """import "std/layers.arch"

block ghost_module(x: tensor, out: int, ratio: int = 2, kernel: int = 1, dw_kernel: int = 3) {
    init = int(out / ratio)
    p = x -> primary: conv(init, kernel=kernel, padding=int(kernel / 2)) -> bn1: bn -> act1: relu
    c = p -> cheap: conv(init, kernel=dw_kernel, padding=int(dw_kernel / 2), groups=init)
          -> bn2: bn -> act2: relu
    return concat(p, c)
}

block ghost_bottleneck(x: tensor, hidden: int, out: int, kernel: int = 3, stride: int = 1,
                       se_ratio: float = 0.25) {
    y = ghost1: ghost_module(x, hidden)
    y = ghost2: ghost_module(y, out)
    return add(y, x)
}

network GhostLike() {
    x = input(3, 32, 32)
    x = x -> stem: conv(16, kernel=3, padding=1) -> bn: bn -> act: relu
    stage1: for i in range(2) {
        x = "block{i + 1}": ghost_bottleneck(x, 32, 16, kernel=3, stride=1, se_ratio=0.25)
    }
    return fc: linear(x -> pool: global_avgpool -> flat: flatten, 10)
}
"""

# The layout at 1400x1000: where the table's costs end, frame labels that cross a frame's
# border or lie over a node, and node texts cut with "…"
LAYOUT_JS = """() => {
  const wrap = document.getElementById('table-wrap').getBoundingClientRect();
  const right = {};
  for (const th of document.querySelectorAll('#layers thead th'))
    right[th.textContent] = th.getBoundingClientRect().right;
  const boxes = (sel) => [...document.querySelectorAll(sel)].map(
    (e) => [e.closest('[data-name]').dataset.name, e.getBoundingClientRect()]);
  const frames = boxes('#svg .cluster rect'), nodes = boxes('#svg .node rect');
  const over = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const bad = [];
  for (const [n, l] of boxes('#svg .cluster-label text')) {
    for (const [m, f] of frames) {
      const across = (y) => l.top < y && l.bottom > y && l.left < f.right && l.right > f.left;
      const acrossX = (x) => l.left < x && l.right > x && l.top < f.bottom && l.bottom > f.top;
      if (across(f.top) || across(f.bottom) || acrossX(f.left) || acrossX(f.right))
        bad.push(n + ' crosses the frame of ' + m);
    }
    for (const [m, r] of nodes) if (over(l, r)) bad.push(n + ' lies over ' + m);
  }
  const cut = [...document.querySelectorAll('#svg .node text')].map((t) => t.textContent)
    .filter((t) => t.includes('…'));
  return {wrap: wrap.right, right, bad, cut, frames: frames.length};
}"""


@pytest.mark.slow   # a browser
@pytest.mark.parametrize("name", ["se_sqnxt", "ghostlike"])
def test_layout_fits_1400_by_1000(browser, tmp_path, name):
    """At 1400x1000 the table's name, op, output, params and MACs columns show without
    scrolling; no frame label crosses a frame or lies over a node, collapsed or expanded;
    block titles are whole (wrapped, not cut)."""
    net = archc.analyze(archc.load_source(GHOSTLIKE) if name == "ghostlike" else name)
    page, problems, _ = open_page(browser, render_html(net), tmp_path)
    try:
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.wait_for_timeout(100)
        for state in ("collapsed", "expanded"):
            got = page.evaluate(LAYOUT_JS)
            for column in ("layer", "op", "output HxWxC", "params", "MACs"):
                assert got["right"][column] <= got["wrap"], (state, column, got["right"])
            assert got["frames"] >= 1 and got["bad"] == [] and got["cut"] == [], (state, got)
            page.click("#expand-all")
        if name == "ghostlike":   # the long call is drawn whole, over two lines
            page.click("#collapse-all")
            texts = page.eval_on_selector_all(
                "#svg .node[data-name='stage11.block1'] text.name, "
                "#svg .node[data-kind='block'] text.name", "ts => ts.map(t => t.textContent)")
            joined = " ".join(t.strip() for t in texts)
            assert "ghost_bottleneck(hidden=32, out=16, kernel=3, stride=1, se_ratio=0.25)" \
                in joined, texts
        assert problems == []
    finally:
        page.close()


@pytest.mark.slow   # a browser
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


@pytest.mark.slow   # a browser
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


@pytest.mark.slow   # a browser
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


@pytest.mark.slow   # a browser
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


@pytest.mark.slow   # CLI runs rendering with Graphviz
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
