// archc view: draws the analysis embedded in #archc-data. Layout: dagre (vendored), re-run on
// every expand/collapse; drawing: plain SVG; no network access, no other library.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("archc-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const layers = D.layers;
  const scopes = new Map(D.scopes.map((s) => [s.name, s]));
  const ACT = new Set(["relu", "relu6", "elu", "leaky_relu", "sigmoid", "tanh", "swish",
                       "hswish", "hsigmoid"]);
  const CATEGORY = { conv: "conv", linear: "conv", bn: "bn", lrn: "bn", add: "merge",
                     concat: "merge", mul: "merge", input: "input" };

  function chainOf(scope) {               // enclosing scopes, outermost first
    const c = [];
    while (scope) { c.push(scope); const s = scopes.get(scope); scope = s ? s.parent : ""; }
    return c.reverse();
  }
  const chains = new Map(layers.map((l) => [l.name, chainOf(l.scope)]));
  const members = new Map();              // scope -> its layers, data-flow order
  for (const l of layers) {
    for (const s of chains.get(l.name)) {
      if (!members.has(s)) members.set(s, []);
      members.get(s).push(l);
    }
  }
  const expanded = new Set(D.scopes.filter((s) => s.kind !== "block").map((s) => s.name));
  let matches = new Set();
  let selected = null;
  let scale = 1;

  // ---- helpers ---------------------------------------------------------------------------
  function el(tag, attrs, text) {
    const e = tag === "svg" || /^(g|rect|path|text|title|defs|marker)$/.test(tag)
      ? document.createElementNS(NS, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function human(n) {
    if (n >= 1e9) return (n / 1e9).toPrecision(3) + "G";
    if (n >= 1e6) return (n / 1e6).toPrecision(3) + "M";
    if (n >= 1e4) return (n / 1e3).toPrecision(3) + "k";
    return String(Math.round(n));
  }
  const full = (n) => Math.round(n).toLocaleString("en-US");
  const ctx = document.createElement("canvas").getContext("2d");
  function textWidth(s, bold) {
    ctx.font = (bold ? "600 " : "") + "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    return ctx.measureText(s).width;
  }
  function shortName(l) { return l.scope ? l.name.slice(l.scope.length + 1) : l.name; }
  function opText(l) {
    const a = l.attrs || {};
    let t = l.op;
    if (a.kernel) t += " " + a.kernel;
    if (a.stride && a.stride !== "1x1") t += " /" + a.stride.split("x")[0];
    if (a.groups && a.groups > 1) t += " g" + a.groups;
    return t;
  }
  function clip(s, n) { return s.length > n ? s.slice(0, n - 1) + "…" : s; }
  // a long block title on several lines (at most `n` characters each, broken after ", "),
  // so that it is read whole instead of cut
  function wrap(s, n) {
    const out = [];
    let line = "";
    for (const part of s.split(/(?<=, )/)) {
      if (line && (line + part).trimEnd().length > n) { out.push(line.trimEnd()); line = "  "; }
      line += part;
    }
    out.push(line.trimEnd());
    return out.flatMap((l) => l.length > n ? [clip(l, n)] : [l]);
  }
  function sum(ls, key) { return ls.reduce((s, l) => s + l[key], 0); }
  const RANKSEP = 34;
  function fit(s, px) {                 // s, cut with "…" to at most px wide
    if (textWidth(s, false) <= px) return s;
    let n = s.length;
    while (n > 4 && textWidth(s.slice(0, n - 1) + "…", false) > px) n--;
    return s.slice(0, n - 1) + "…";
  }

  // the node a layer is drawn as: itself, or its outermost collapsed scope
  function rep(name) {
    for (const s of chains.get(name)) if (!expanded.has(s)) return "s:" + s;
    return "l:" + name;
  }

  function nodeInfo(id) {
    if (id.startsWith("l:")) {
      const l = layers.find((x) => x.name === id.slice(2));
      const cat = CATEGORY[l.op] || (ACT.has(l.op) ? "act" : l.op.includes("pool") ? "pool" : "other");
      const lines = [shortName(l), opText(l), l.out];
      if (l.params || l.macs) lines.push(human(l.params) + " params · " + human(l.macs) + " MACs");
      return { id, name: l.name, block: false, cls: "op-" + cat, lines, bold: 1, parent: l.scope,
               tip: l.name + "\n" + l.op + " → " + l.out + "\nparams " + full(l.params) +
                    ", MACs " + full(l.macs) + (l.source ? "\n" + l.source : "") };
    }
    const s = scopes.get(id.slice(2));
    const ls = members.get(s.name) || [];
    const last = ls[ls.length - 1];
    const title = wrap("▸ " + s.title, 48);
    return { id, name: s.name, block: true, cls: "block", parent: s.parent, bold: title.length,
             lines: [...title, ls.length + " layers → " + (last ? last.out : "?"),
                     human(sum(ls, "params")) + " params · " + human(sum(ls, "macs")) + " MACs"],
             tip: s.title + "\n" + s.name + " (" + s.kind + ")\n" + full(sum(ls, "params")) + " params, " +
                  full(sum(ls, "macs")) + " MACs\nclick to expand" };
  }

  // ---- the graph -------------------------------------------------------------------------
  function layout() {
    const g = new dagre.graphlib.Graph({ compound: true });
    // ranksep: a frame's top is half of it above its first member: room for the frame's label
    g.setGraph({ rankdir: "TB", nodesep: 16, ranksep: RANKSEP, marginx: 14, marginy: 14 });
    g.setDefaultEdgeLabel(() => ({}));
    const infos = new Map();
    for (const l of layers) {
      const id = rep(l.name);
      if (infos.has(id)) continue;
      const info = nodeInfo(id);
      infos.set(id, info);
      const w = Math.max(...info.lines.map((t, i) => textWidth(t, i < info.bold))) + 16;
      g.setNode(id, { width: Math.ceil(w), height: 15 * info.lines.length + 8 });
    }
    for (const info of infos.values()) {   // clusters: the expanded scopes around it
      let child = info.id;
      for (const s of chainOf(info.parent).reverse()) {
        const cid = "c:" + s;
        if (!g.hasNode(cid)) g.setNode(cid, { scope: s });
        g.setParent(child, cid);
        child = cid;
      }
    }
    const kinds = new Map();
    for (const [u, v, kind] of D.edges) {
      const a = rep(u), b = rep(v);
      if (a === b) continue;
      const key = a + "\u0000" + b;
      // an edge that stands for several keeps a residual/concat/scale style only when all
      // of them have it (into a collapsed block, the main path is plain data)
      if (!kinds.has(key)) kinds.set(key, kind);
      else if (kinds.get(key) !== kind) kinds.set(key, "data");
    }
    for (const [key, kind] of kinds) {
      const [a, b] = key.split("\u0000");
      g.setEdge(a, b, { kind });
    }
    dagre.layout(g);
    return { g, infos };
  }

  let cached = { key: null };
  function draw() {
    // a new layout only when the set of expanded scopes changed (zoom, search and selection
    // only redraw)
    const key = [...expanded].sort().join("\u0000");
    if (cached.key !== key) cached = { key, ...layout() };
    const { g, infos } = cached;
    const svg = document.getElementById("svg");
    svg.replaceChildren();
    const W = g.graph().width, H = g.graph().height;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", W * scale);
    svg.setAttribute("height", H * scale);
    const defs = el("defs");
    const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
                                  markerWidth: 7, markerHeight: 7, orient: "auto" });
    marker.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#667085" }));
    defs.appendChild(marker);
    svg.appendChild(defs);
    const labels = [];                    // frame labels go on top of everything
    const clusters = g.nodes().filter((id) => id.startsWith("c:"))
      .sort((a, b) => chainOf(a.slice(2)).length - chainOf(b.slice(2)).length);
    for (const cid of clusters) {
      const n = g.node(cid), s = scopes.get(n.scope);
      const box = el("g", { class: "cluster kind-" + s.kind, "data-name": s.name });
      box.appendChild(el("rect", { x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width,
                                   height: n.height, rx: 6 }));
      // the label fits in its frame (a longer title is cut; the tooltip has it whole)
      const label = el("text", { x: n.x - n.width / 2 + 6, y: n.y - n.height / 2 + 13 },
                       fit("▾ " + s.title, n.width - 12));
      label.appendChild(el("title", {}, s.title + "\nclick to collapse " + s.name));
      labels.push([box, label]);
      label.addEventListener("click", () => { expanded.delete(s.name); draw(); });
      svg.appendChild(box);
    }
    for (const e of g.edges()) {
      const d = g.edge(e);
      const p = d.points.map((q, i) => (i ? "L" : "M") + q.x.toFixed(1) + "," + q.y.toFixed(1));
      svg.appendChild(el("path", { class: "edge " + d.kind, d: p.join(" "),
                                   "marker-end": "url(#arrow)", "data-from": e.v,
                                   "data-to": e.w }));
    }
    for (const [id, info] of infos) {
      const n = g.node(id);
      const cls = ["node", info.cls];
      if (info.block) {
        if ((members.get(info.name) || []).some((l) => matches.has(l.name))) cls.push("match");
      } else {
        if (matches.has(info.name)) cls.push("match");
        if (selected === info.name) cls.push("selected");
      }
      const node = el("g", { class: cls.join(" "), "data-name": info.name,
                             "data-kind": info.block ? "block" : "layer",
                             transform: `translate(${n.x - n.width / 2},${n.y - n.height / 2})` });
      node.appendChild(el("title", {}, info.tip));
      node.appendChild(el("rect", { width: n.width, height: n.height, rx: 4 }));
      info.lines.forEach((t, i) => node.appendChild(
        el("text", { x: 8, y: 16 + 15 * i, class: i < info.bold ? "name" : "sub" }, t)));
      node.addEventListener("click", () => {
        if (info.block) { expanded.add(info.name); draw(); } else select(info.name, false);
      });
      svg.appendChild(node);
    }
    for (const [box, label] of labels) {  // drawn last, still part of their frame's group
      const top = el("g", { class: box.getAttribute("class").replace("cluster", "cluster-label"),
                            "data-name": box.dataset.name });
      top.appendChild(label);
      svg.appendChild(top);
    }
    document.body.dataset.nodes = infos.size;
    document.body.dataset.ready = "1";
  }

  // ---- the table -------------------------------------------------------------------------
  const bitCols = D.bitops ? [["w bits", (l) => l.bits ? l.bits.weight_bits ?? "" : "", false],
                              ["mul bit-ops", (l) => l.bits ? full(l.bits.mul_bitops) : "", true],
                              ["add bit-ops", (l) => l.bits ? full(l.bits.add_bitops) : "", true],
                              ["storage bits", (l) => l.bits ? full(l.bits.storage_bits) : "", true]]
                           : [];
  // the costs right after the layer and its output, so that they show without scrolling
  const COLUMNS = [
    ["#", (l, i) => i, true], ["layer", (l) => l.name, false], ["op", (l) => l.op, false],
    ["output HxWxC", (l) => l.out, false],
    ["params", (l) => full(l.params), true], ["MACs", (l) => full(l.macs), true],
    ["activations", (l) => full(l.activations), true], ...bitCols,
    ["input HxWxC", (l) => l.in.join(", "), false],
    ["kernel", (l) => l.attrs.kernel || "", false], ["stride", (l) => l.attrs.stride || "", false],
    ["padding", (l) => l.attrs.padding || "", false], ["groups", (l) => l.attrs.groups ?? "", true]];
  const rows = new Map();

  function buildTable() {
    const head = el("tr");
    for (const [title, , num] of COLUMNS) head.appendChild(el("th", num ? { class: "num" } : {}, title));
    document.querySelector("#layers thead").appendChild(head);
    const body = document.querySelector("#layers tbody");
    layers.forEach((l, i) => {
      if (l.op === "input") return;
      const tr = el("tr", { class: "layer-row", "data-name": l.name, title: l.source });
      COLUMNS.forEach(([, get, num], c) =>
        tr.appendChild(el("td", { class: c === 1 ? "name" : num ? "num" : "" }, String(get(l, i)))));
      tr.addEventListener("click", () => select(l.name, true));
      rows.set(l.name, tr);
      body.appendChild(tr);
    });
  }

  function select(name, reveal) {
    if (selected && rows.has(selected)) rows.get(selected).classList.remove("selected");
    selected = name;
    const tr = rows.get(name);
    if (tr) { tr.classList.add("selected"); if (!reveal) tr.scrollIntoView({ block: "center" }); }
    if (reveal) for (const s of chains.get(name)) expanded.add(s);
    draw();
    if (reveal) {
      const node = document.querySelector(`#svg .node[data-name="${CSS.escape(name)}"]`);
      if (node) node.scrollIntoView({ block: "center", inline: "center" });
    }
  }

  function search(reveal) {
    const q = document.getElementById("search").value.trim().toLowerCase();
    matches = new Set();
    let shown = 0;
    for (const [name, tr] of rows) {
      const hit = !q || name.toLowerCase().includes(q);
      tr.classList.toggle("hidden", !hit);
      if (hit) shown++;
      if (hit && q) matches.add(name);
    }
    document.getElementById("count").textContent = `${shown} of ${rows.size} layers`;
    if (reveal) for (const m of matches) for (const s of chains.get(m)) expanded.add(s);
    draw();
  }

  function header() {
    document.getElementById("title").textContent = D.network + "  (" + D.file + ")";
    document.getElementById("params").textContent =
      Object.entries(D.parameters).map(([k, v]) => k + "=" + v).join("  ");
    const t = D.totals;
    const items = [["params", full(t.params)], ["BN buffers", full(t.buffers)],
      ["MACs", full(t.macs)], ["FLOPs", full(t.flops)], ["element-wise ops", full(t.elementwise_ops)],
      ["activations", full(t.activations)],
      ["peak live activations", full(t.peak_activations) + " (at " + t.peak_activations_at + ")"],
      ["size", (t.size_bytes / 1e6).toFixed(3) + " MB at " + t.precision_bits + "-bit"],
      ["layers", full(t.layers)]];
    if (D.bitops) items.push(["bit-op score (" + t.bitops_rules + ")", t.bitops_score.toFixed(5)],
                             ["storage", (t.bitops_storage_bits / 8e6).toFixed(4) + " MB"]);
    const dl = document.getElementById("totals");
    for (const [k, v] of items) {
      const d = el("div");
      d.append(el("dt", {}, k), el("dd", {}, v));
      dl.appendChild(d);
    }
  }

  function zoom(f) { scale = Math.min(4, Math.max(0.1, f)); draw(); }
  document.getElementById("expand-all").onclick = () => { D.scopes.forEach((s) => expanded.add(s.name)); draw(); };
  document.getElementById("collapse-all").onclick = () => {
    D.scopes.forEach((s) => (s.kind === "block" ? expanded.delete(s.name) : expanded.add(s.name)));
    draw();
  };
  document.getElementById("zoom-in").onclick = () => zoom(scale * 1.25);
  document.getElementById("zoom-out").onclick = () => zoom(scale / 1.25);
  document.getElementById("zoom-fit").onclick = () => {
    const box = document.getElementById("graph").clientWidth - 20;
    const W = Number(document.getElementById("svg").getAttribute("viewBox").split(" ")[2]);
    zoom(box / W);
  };
  const input = document.getElementById("search");
  input.addEventListener("input", () => search(false));
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") search(true); });

  header();
  buildTable();
  search(false);
})();
