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
  deploy                RepVGG and MobileOne: params, buffers and MACs of the deployed form
                        (timm.utils.model.reparameterize_model)
  function              timm's weights copied into archc's generated torch module (the keys
                        mapped by the family's `key` function below, or where it has none
                        tensor by tensor in state_dict order; each tensor reshaped to archc's
                        shape when the element counts agree, e.g. a Linear on channels-last as
                        a 1x1 conv), BN statistics and layer scales randomised first so that
                        they count: max |archc - timm| / max |timm| over the outputs for a
                        random input, which must be <= TOLERANCE

Attention is timm's non-fused form (timm.layers.set_fused_attn(False)): the explicit
q @ k^T, softmax, @ v whose products fvcore and the counter above see as matmuls.

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


def _reparam_key(key: str) -> str:
    """archc's state_dict key of repvgg.arch / mobileone.arch -> timm's: stages from 0,
    MobileOne's k branches as a list, the classifier in the head."""
    key = re.sub(r"^stages(\d+)\.block(\d+)\.",
                 lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.", key)
    key = re.sub(r"\.conv_kxk(\d+)\.", r".conv_kxk.\1.", key)
    return re.sub(r"^fc\.", "head.fc.", key)


# family -> (archc network, {timm name: archc parameters}, key map or None: in order)
FAMILIES = {
    "convnext": ("convnext", {f"convnext_{v}": {"variant": v}
                              for v in ("atto", "femto", "pico", "nano", "tiny")},
                 _convnext_key),
    "mobilenet_v4": ("mobilenet_v4", {f"mobilenetv4_{v}": {"variant": v}
                                      for v in ("conv_small", "conv_medium", "hybrid_medium")},
                     None),
    "mobilevit": ("mobilevit", {f"mobilevit_{v}": {"variant": v} for v in ("xxs", "xs", "s")},
                  None),
    "repvgg": ("repvgg", {f"repvgg_{v}": {"variant": v} for v in ("a0", "a1", "b0")},
               _reparam_key),
    "mobileone": ("mobileone", {f"mobileone_{v}": {"variant": v} for v in ("s0", "s1")},
                  _reparam_key),
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


def _randomise(model, seed: int = 0) -> None:
    """BN statistics and layer scales (which start at 1e-5 or 1e-6) made to count."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
        for name, p in model.named_parameters():
            if p.dim() == 1 and name.endswith("gamma"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)


def _pairs(mine: dict, theirs: dict, key, name: str) -> list:
    """(archc key, timm key) of every tensor but BN's step counters: by the key map, or in
    state_dict order."""
    theirs = [k for k in theirs if not k.endswith("num_batches_tracked")]
    mine = [k for k in mine if not k.endswith("num_batches_tracked")]
    if key is None:
        if len(mine) != len(theirs):
            raise SystemExit(f"{name}: {len(theirs)} timm tensors but {len(mine)} archc tensors")
        return list(zip(mine, theirs))
    pairs = [(k, key(k)) for k in mine]
    unused = set(theirs) - {t for _, t in pairs}
    if unused:
        raise SystemExit(f"{name}: timm tensors not copied: {sorted(unused)[:5]}")
    return pairs


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
           "buffers": sum(b.numel() for n, b in model.named_buffers()
                          if not n.endswith("num_batches_tracked")),
           "macs": _macs(model, x),
           "outputs": [list(y.shape[1:]) for y in ys]}
    # function: timm's weights in archc's generated module
    _randomise(model)
    with torch.no_grad():
        ys = _outputs(model(x))
    net = archc.load(net_name, **params, resolution=size[1])
    mine = torch_backend.compile_module(net).eval()
    theirs, ours = model.state_dict(), mine.state_dict()
    state = dict(ours)   # BN's step counters stay archc's own
    for k, tk in _pairs(ours, theirs, key, name):
        t, v = theirs[tk], ours[k]
        if t.numel() != v.numel():
            raise SystemExit(f"{name}: {k} {tuple(v.shape)} does not fit timm's {tk} "
                             f"{tuple(t.shape)}")
        state[k] = t.reshape(v.shape).clone()
    mine.load_state_dict(state)
    with torch.no_grad():
        got = _outputs(mine(x))
    diff = max(float((g.reshape(y.shape) - y).abs().max() / y.abs().max())
               for g, y in zip(got, ys))
    row["function"] = {"max_rel_diff": diff, "tolerance": TOLERANCE, "ok": diff <= TOLERANCE}
    if MODELS[name][2] is _reparam_key:   # and the deployed form, timm's own transform
        from timm.utils.model import reparameterize_model
        deployed = reparameterize_model(model)
        row["deploy"] = {"params": sum(p.numel() for p in deployed.parameters()),
                         "buffers": sum(b.numel() for n, b in deployed.named_buffers()
                                        if not n.endswith("num_batches_tracked")),
                         "macs": _macs(deployed, x)}
    return row


def main(argv) -> int:
    import torch
    timm, note = _import_timm()
    timm.layers.set_fused_attn(False)
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
