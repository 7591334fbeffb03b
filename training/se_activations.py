"""`archc inspect RUN --se-activations`: what the Squeeze-and-Excitation gates of a trained
network do, per channel and per class (seed 003, Figs. 10 and 11; Hu et al. Sec. 7).

For every SE block (a gate layer -- an op whose registry entry says `gate`: sigmoid,
hsigmoid -- inside a call of the `se` block) the gate's output s_c in [0, 1] is one scale
per channel and image. Over the test images of each class we report its mean and standard
deviation per channel; seed 003 plots the mean per class (Fig. 10: classes agree in early
blocks and separate in late ones) and the spread (Fig. 11: larger in deeper blocks).

The run folder is the one `archc train` writes (run_dir.py): run.json names the network, its
parameter values and the data; model.safetensors holds the weights in the torch layout. The
gates are read with the backends' tap mode: the module is built with compile_module(net,
tap=...), which passes every layer's output through the tap by its IR name.
"""
from __future__ import annotations

import json
import os

import numpy as np

from archc._files import write_atomic
from archc.compiler import ArchError, Network, analyze, load_program, ops
from archc.compiler._loader import build

from . import first_output
from .norm import CIFAR10, Normalization, recorded


def se_gates(net: Network) -> list[dict]:
    """The SE gates in data-flow order: {"block": scope name, "gate": layer, "channels": C}."""
    out = []
    for name in net.layers():
        d = net.node(name)
        if not ops.get(d["op"]).gate:
            continue
        scope = d.get("scope", "")
        while scope and net.scopes[scope].kind != "block":   # loops/splits inside the block
            scope = net.scopes[scope].parent or ""
        if scope and net.scopes[scope].definition == "se":
            out.append({"block": scope, "gate": name, "channels": d["shape"][0]})
    return out


def load_run(run: str, arch: str | None = None) -> tuple[Network, dict, dict]:
    """(network, run.json, weights) of a finished run; `arch` overrides the .arch file named in
    run.json (which keeps the file's base name only)."""
    from archc.backends import weights
    meta_path = os.path.join(run, "run.json")
    if not os.path.isfile(meta_path):
        raise ArchError(f"'{run}' is not an archc train run folder (no run.json)")
    model_path = os.path.join(run, "model.safetensors")
    if not os.path.isfile(model_path):
        raise ArchError(f"'{run}' has no model.safetensors: the run has not finished",
                        hint=f"finish it with archc train ... --out {run} --resume")
    from archc._checks import field, run_json
    meta = run_json(meta_path)
    target = arch or field(meta, "file", str, meta_path)
    params = dict(field(meta, "params", dict, meta_path))
    try:
        net = build(load_program(target), params)
    except ArchError as e:
        more = (f"is {arch} the .arch file the run was trained from?" if arch else
                f"run.json names the file '{meta['file']}': give its path with --arch FILE")
        e.hint = (e.hint + "; " if e.hint else "") + more
        raise
    count = analyze(net).totals["params"]
    if net.name != meta.get("network") or count != meta.get("param_count"):
        raise ArchError(f"{target} with the run's parameters is {net.name} with {count:,} "
                        f"parameters, but the run trained {meta.get('network')} with "
                        f"{meta.get('param_count')} parameters",
                        hint="give the .arch file the run was trained from with --arch")
    return net, meta, weights.load(model_path)


def _normalise(x_u8: np.ndarray, norm: Normalization = CIFAR10) -> np.ndarray:
    """uint8 NHWC -> float32 NHWC, normalised as training did: with the run's recorded mean
    and std (norm.recorded; the CIFAR-10 fallback for a run that recorded none)."""
    mean, std = norm.scaled()
    return (x_u8.astype(np.float32) - mean) / std


def _torch_forward(net: Network, tensors: dict, gates: list[str]):
    import torch

    from archc.backends import torch_backend
    store: dict = {}
    wanted = set(gates)

    def tap(name, value):
        if name in wanted:
            store[name] = value
        return value

    model = torch_backend.compile_module(net, tap=tap)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
                           tensors.items()}, strict=True)
    model.eval()

    def forward(x):
        store.clear()
        with torch.no_grad():
            logits = first_output(model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()))
        return logits.numpy(), {g: store[g].reshape(len(x), -1).numpy() for g in gates}
    return forward


def _jax_forward(net: Network, tensors: dict, gates: list[str]):
    import jax
    from flax import nnx

    from archc.backends import lowering, weights
    # built abstractly: no initial values are drawn, every weight comes from the run
    model = weights.jax_module_from(net, tensors, tap=True)
    model.eval()
    graph, state = nnx.split(model)

    @jax.jit
    def run(state, x):
        store: dict = {}
        m = nnx.merge(graph, state)
        lowering.set_tap(m, lambda name, v: store.setdefault(name, v) if name in gates else v)
        logits = first_output(m(x))
        return logits, {g: store[g].reshape(x.shape[0], -1) for g in gates}

    def forward(x):
        logits, got = run(state, x)
        return np.asarray(logits), {g: np.asarray(v) for g, v in got.items()}
    return forward


def gate_statistics(net: Network, tensors: dict, images: np.ndarray, labels: np.ndarray,
                    classes: int, backend: str = "torch", batch_size: int = 250,
                    norm: Normalization = CIFAR10) -> dict:
    """Per gate: per class and channel, the count, mean and std (population) of the gate's
    output over `images` (uint8 NHWC, normalised with `norm`, the run's); also over all
    images, and the top-1 accuracy."""
    found = se_gates(net)
    if not found:
        raise ArchError(f"{net.name} has no SE block (no sigmoid/hsigmoid gate inside a call "
                        "of the `se` block)")
    names = [g["gate"] for g in found]
    forward = (_torch_forward if backend == "torch" else _jax_forward)(net, tensors, names)
    count = np.zeros(classes, np.int64)
    s1 = {g: np.zeros((classes, c["channels"])) for g, c in zip(names, found)}
    s2 = {g: np.zeros((classes, c["channels"])) for g, c in zip(names, found)}
    correct = 0
    for i in range(0, len(labels), batch_size):
        x, y = _normalise(images[i:i + batch_size], norm), labels[i:i + batch_size]
        logits, got = forward(x)
        correct += int(np.sum(np.argmax(logits, -1) == y))
        np.add.at(count, y, 1)
        for g in names:
            v = got[g].astype(np.float64)
            np.add.at(s1[g], y, v)
            np.add.at(s2[g], y, v * v)
    n = np.maximum(count, 1)[:, None]
    blocks = []
    for g, c in zip(names, found):
        mean = s1[g] / n
        std = np.sqrt(np.maximum(s2[g] / n - mean * mean, 0.0))
        total = max(int(count.sum()), 1)
        mean_all = s1[g].sum(0) / total
        std_all = np.sqrt(np.maximum(s2[g].sum(0) / total - mean_all ** 2, 0.0))
        present = count > 0
        blocks.append({**c, "mean": mean.tolist(), "std": std.tolist(),
                       "mean_all": mean_all.tolist(), "std_all": std_all.tolist(),
                       # Fig. 10's "class-dependent": how far the class means spread, per
                       # channel, averaged; Fig. 11's spread: the std within a class, averaged
                       "between_class_std": float(mean[present].std(0).mean()),
                       "within_class_std": float(std[present].mean())})
    return {"images": int(count.sum()), "images_per_class": count.tolist(),
            "accuracy": 100.0 * correct / max(len(labels), 1), "blocks": blocks}


# ---- a run folder in, JSON and figures out ---------------------------------------------------
def _test_split(data_path: str, meta: dict, per_class: int | None, log):
    """The test images: by default the run's own test split (the same class-balanced subset
    when the run was trained with --test-per-class)."""
    from .data import load_images
    data = load_images(data_path, log=log)
    want = list(meta.get("data", {}).get("classes", []))
    if want and list(data.classes) != want:
        raise ArchError(f"{data_path} has classes {list(data.classes)}, the run was trained on "
                        f"{want}", hint="give the data set the run was trained on with --data")
    n_run, k = meta.get("data", {}).get("test"), len(data.classes)
    if per_class is None and n_run and n_run < len(data.test_y) and n_run % k == 0:
        per_class = n_run // k
    seed = meta.get("recipe", {}).get("seed", 0)
    return data.subset(None, per_class, seed=seed)


def inspect_run(run: str, data: str, out: str | None = None, per_class: int | None = None,
                backend: str | None = None, arch: str | None = None, batch_size: int = 250,
                log=print) -> dict:
    """Gate statistics of a finished run: writes se_activations.json, se_activations.png (mean
    per class and channel, seed 003 Fig. 10) and se_activations_std.png (mean and standard
    deviation per channel over all images, Fig. 11) into `out` (default: the run folder)."""
    net, meta, tensors = load_run(run, arch)
    backend = backend or meta.get("backend", "torch")
    if backend not in ("torch", "jax"):
        raise ArchError(f"unknown backend '{backend}'", hint="backends: torch, jax")
    images = _test_split(data, meta, per_class, log)
    stats = gate_statistics(net, tensors, images.test_x, images.test_y, len(images.classes),
                            backend, batch_size,
                            norm=recorded(meta, os.path.join(run, "run.json")))
    result = {"run": os.path.abspath(run), "network": net.name,
              "parameters": meta.get("params"), "backend": backend,
              "data": os.path.basename(str(data).rstrip("/")), "classes": list(images.classes),
              **stats}
    out = out or run
    os.makedirs(out, exist_ok=True)
    write_atomic(os.path.join(out, "se_activations.json"), json.dumps(result, indent=1) + "\n")
    plot_means(result, os.path.join(out, "se_activations.png"))
    plot_spread(result, os.path.join(out, "se_activations_std.png"))
    log(f"{net.name}: {len(result['blocks'])} SE blocks over {result['images']} test images "
        f"(accuracy {result['accuracy']:.2f}% with these weights); wrote "
        f"se_activations.json, se_activations.png, se_activations_std.png in {out}")
    return result


def _grid(n: int, title: str):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 2.9 * rows + 0.6), dpi=100)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return fig, axes


def _save(fig, path: str, bottom: float = 0.0) -> None:
    fig.tight_layout(rect=(0, bottom, 1, 0.96))
    write_atomic(path, lambda f: fig.savefig(f, format="png"))


def plot_means(result: dict, path: str) -> None:
    """Fig. 10: per SE block, the mean gate value of each channel, one line per class."""
    blocks = result["blocks"]
    fig, axes = _grid(len(blocks), f"{result['network']}: mean SE gate activation per channel "
                                   f"and class ({result['images']} test images)")
    for ax, b in zip(axes, blocks):
        channels = np.arange(b["channels"])
        for k, name in enumerate(result["classes"]):
            if result["images_per_class"][k]:
                ax.plot(channels, b["mean"][k], lw=0.9, label=name)
        ax.set_title(f"{b['block']} (between-class std {b['between_class_std']:.3f})",
                     fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xlabel("channel", fontsize=8)
        ax.set_ylabel("activation", fontsize=8)
        ax.tick_params(labelsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", fontsize=8, ncol=min(len(labels), 10),
               frameon=False)
    _save(fig, path, bottom=0.07)


def plot_spread(result: dict, path: str) -> None:
    """Fig. 11: per SE block, the mean gate value of each channel over all test images, with
    one standard deviation either side."""
    blocks = result["blocks"]
    fig, axes = _grid(len(blocks), f"{result['network']}: SE gate activation per channel, "
                                   f"mean ± std over {result['images']} test images")
    for ax, b in zip(axes, blocks):
        channels = np.arange(b["channels"])
        mean, std = np.asarray(b["mean_all"]), np.asarray(b["std_all"])
        ax.fill_between(channels, mean - std, mean + std, alpha=0.3, lw=0)
        ax.plot(channels, mean, lw=0.9)
        ax.set_title(f"{b['block']} (std {std.mean():.3f}; within class "
                     f"{b['within_class_std']:.3f})", fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xlabel("channel", fontsize=8)
        ax.set_ylabel("activation", fontsize=8)
        ax.tick_params(labelsize=7)
    _save(fig, path)
