"""Measure timm's models and write the golden counts archc is checked against
(tests/data/timm_counts.json, read by tests/test_timm_oracle.py); compare function.

timm is not a dependency of archc or of its tests. Run this in a scratch environment:

    python3 -m venv /tmp/timmvenv
    /tmp/timmvenv/bin/pip install torch==2.13.0 timm
    /tmp/timmvenv/bin/pip install -e .          # archc itself, for the comparison
    /tmp/timmvenv/bin/python tools/measure_timm.py            # every model of MODELS
    /tmp/timmvenv/bin/python tools/measure_timm.py convnext_atto

For each model (timm's randomly initialised weights, eval mode, one image at timm's default
input size) it records

  params, buffers       element counts of model.parameters() / model.buffers()
  macs.conv_linear      multiply-accumulates of convolutions and linear layers
                        (torch.utils.flop_counter: aten.convolution, addmm, mm; FLOPs / 2)
  macs.matmul           of matrix products between activations (bmm, baddbmm, scaled
                        dot-product attention; FLOPs / 2), as fvcore counts matmuls
  outputs               the output shapes, batch dimension excluded
  function              timm's weights copied into archc's generated torch module (the keys
                        mapped by the family's `key` function below, each tensor reshaped to
                        archc's shape when the element counts agree, e.g. a Linear on channels
                        -last as a 1x1 conv): max |archc - timm| / max |timm| over the outputs
                        for a random input, which must be <= TOLERANCE

The file's format ("models" maps a timm name to its row; every row names the archc network
and parameters that build it) lets any family add rows: add an entry to FAMILIES.

timm imports torchvision unconditionally (FrozenBatchNorm2d, datasets, transforms). When the
installed torchvision cannot load (here: PyPI's torchvision 0.28.0 is built against CUDA
torch and needs libc10_cuda.so, which torch 2.13.0+cpu lacks), its names are placeholders that
fail when used, and the file says so; none of the measured models uses torchvision.
"""
from __future__ import annotations

import json
import platform
import re
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "timm_counts.json"
TOLERANCE = 1e-5


def _convnext_key(key: str) -> str:
    """archc's state_dict key of convnext.arch -> timm's ConvNeXt key."""
    rules = [(r"^stem_conv\.", "stem.0."), (r"^stem_norm\.", "stem.1."),
             (r"^stage(\d+)\.downsample_norm\.", r"stages.\1.downsample.0."),
             (r"^stage(\d+)\.downsample\.", r"stages.\1.downsample.1."),
             (r"^stage(\d+)\.block(\d+)\.fc(\d)\.", r"stages.\1.blocks.\2.mlp.fc\3."),
             (r"^stage(\d+)\.block(\d+)\.gamma\.gamma$", r"stages.\1.blocks.\2.gamma"),
             (r"^stage(\d+)\.block(\d+)\.", r"stages.\1.blocks.\2."),
             (r"^norm\.", "head.norm."), (r"^fc\.", "head.fc.")]
    for pattern, repl in rules:
        if re.search(pattern, key):
            return re.sub(pattern, repl, key)
    return key


# family -> (archc network, {timm name: archc parameters}, key map)
FAMILIES = {
    "convnext": ("convnext", {f"convnext_{v}": {"variant": v}
                              for v in ("atto", "femto", "pico", "nano", "tiny")},
                 _convnext_key),
}
MODELS = {name: (net, params, key) for net, variants, key in FAMILIES.values()
          for name, params in variants.items()}


class _Stub(type):
    """A placeholder for any torchvision name: each attribute is another placeholder (one
    per dotted name), and making one is an error."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stub(f"{cls.__name__}.{name}")

    def __call__(cls, *args, **kwargs):
        raise RuntimeError("stub: torchvision is not usable in this environment")


_STUBS: dict = {}


def _stub(name: str):
    if name not in _STUBS:
        _STUBS[name] = _Stub(name, (), {})
    return _STUBS[name]


def _module_attr(module: str, attr: str):
    if attr.startswith("__"):
        raise AttributeError(attr)
    return _stub(f"{module}.{attr}")


class _StubFinder:
    """Imports of torchvision.* give modules whose every name is the placeholder."""

    def find_spec(self, name, path=None, target=None):
        import importlib.machinery
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = types.ModuleType(spec.name)
        mod.__path__ = []
        mod.__getattr__ = lambda attr: _module_attr(spec.name, attr)
        return mod

    def exec_module(self, module):
        pass


def _import_timm():
    """timm, with a placeholder torchvision when the installed one cannot load (module
    docstring)."""
    note = None
    try:
        import torchvision  # noqa: F401
    except Exception as err:   # its compiled ops were built for another torch
        note = (f"torchvision could not be imported ({type(err).__name__}: {err}); timm was "
                "imported with placeholders for torchvision's names, which no measured model "
                "uses (creating one is an error)")
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.meta_path.insert(0, _StubFinder())
    import timm
    return timm, note


def _macs(model, x) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    flops = {str(op).split(".")[1]: n for op, n in counter.get_flop_counts()["Global"].items()}
    conv_linear = sum(flops.pop(k, 0) for k in ("convolution", "addmm", "mm"))
    matmul = sum(flops.pop(k, 0) for k in ("bmm", "baddbmm", "_scaled_dot_product_efficient_attention",
                                           "_scaled_dot_product_flash_attention",
                                           "_scaled_dot_product_cudnn_attention"))
    if flops:
        raise SystemExit(f"unclassified counted ops: {sorted(flops)}")
    return {"conv_linear": conv_linear // 2, "matmul": matmul // 2}


def _outputs(y) -> list:
    ys = list(y.values()) if isinstance(y, dict) else list(y) if isinstance(y, (list, tuple)) \
        else [y]
    return ys


def measure(name: str, timm) -> dict:
    import torch

    import archc
    from archc.backends import torch_backend
    net_name, params, key = MODELS[name]
    model = timm.create_model(name, pretrained=False).eval()
    size = tuple(model.pretrained_cfg["input_size"])
    torch.manual_seed(0)
    x = torch.randn(1, *size)
    with torch.no_grad():
        ys = _outputs(model(x))
    row = {"archc": {"network": net_name, "params": params},
           "input": list(size),
           "params": sum(p.numel() for p in model.parameters()),
           "buffers": sum(b.numel() for b in model.buffers()),
           "macs": _macs(model, x),
           "outputs": [list(y.shape[1:]) for y in ys]}
    # function: timm's weights in archc's generated module
    net = archc.load(net_name, **params, resolution=size[1])
    mine = torch_backend.compile_module(net).eval()
    theirs = model.state_dict()
    state = {}
    for k, v in mine.state_dict().items():
        t = theirs[key(k)]
        if t.numel() != v.numel():
            raise SystemExit(f"{name}: {k} has {v.numel()} values, timm's {key(k)} {t.numel()}")
        state[k] = t.reshape(v.shape)
    unused = set(theirs) - {key(k) for k in mine.state_dict()}
    if unused:
        raise SystemExit(f"{name}: timm tensors not copied: {sorted(unused)[:5]}")
    mine.load_state_dict(state)
    with torch.no_grad():
        got = _outputs(mine(x))
    diff = max(float((g.reshape(y.shape) - y).abs().max() / y.abs().max())
               for g, y in zip(got, ys))
    row["function"] = {"max_rel_diff": diff, "tolerance": TOLERANCE, "ok": diff <= TOLERANCE}
    return row


def main(argv) -> int:
    import torch
    timm, note = _import_timm()
    names = argv or list(MODELS)
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc.update({"about": "timm's counts measured by tools/measure_timm.py (its docstring defines "
                         "every field); read by tests/test_timm_oracle.py",
                "timm": timm.__version__, "torch": torch.__version__,
                "python": platform.python_version()})
    if note:
        doc["note"] = note
    models = doc.setdefault("models", {})
    ok = True
    for name in names:
        row = measure(name, timm)
        models[name] = row
        ok &= row["function"]["ok"]
        print(f"{name:<18} params {row['params']:>11,}  buffers {row['buffers']:>6,}  MACs "
              f"{row['macs']['conv_linear']:>14,} + matmul {row['macs']['matmul']:>12,}  "
              f"function max rel. diff {row['function']['max_rel_diff']:.2e}")
    doc["models"] = dict(sorted(models.items()))
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
