"""Measure timm's MobileNetV4 and MobileViT variants, and check archc's files compute them.

Run once in a scratch environment with timm (it is not a dependency of archc):

    python3 -m venv /tmp/attvenv
    /tmp/attvenv/bin/pip install torch==2.13.0 timm lark networkx numpy safetensors
    PYTHONPATH=.. /tmp/attvenv/bin/python tools/measure_timm_attention.py \\
        > tests/data/timm_attention_counts.json      # from the repository's root (as archc)

For each timm model, at its default resolution, with timm's non-fused attention (the
explicit q @ k^T, softmax, @ v that fvcore and the counts below see):
- params: sum of parameter elements; buffers: BN running mean and variance elements;
- macs_conv_linear / macs_matmul: multiply-accumulates by operator, as fvcore counts them
  (torch.utils.flop_counter's FLOPs / 2): convolution, addmm and mm (linear layers) /
  bmm (the products of two activations: attention);
- output: the logits' shape.
Where archc's library has the variant, its generated torch module gets timm's weights (copied
tensor by tensor in state_dict order, a linear weight into a 1 x 1 conv's) and both compute
one random batch in eval mode, BN statistics and layer scales randomised first:
max_rel_diff is max |archc - timm| / max |timm| (max_abs_logit: max |timm|). tests/test_library_attention.py compares archc's analysis
with these numbers; it needs neither timm nor this tool.
"""
from __future__ import annotations

import datetime
import json
import platform

import torch

# torchvision's compiled extension (detection ops such as nms) does not load against the
# torch 2.13.0+cpu build; timm imports torchvision, which then fails while registering fake
# kernels for those ops. The models measured here are pure Python (torch.nn only), so the
# registration is stubbed out, as tools/measure_torchvision_a.py does.
_register_fake = torch.library.register_fake
torch.library.register_fake = lambda *a, **k: (lambda f: f)
try:
    import timm
    import torchvision
finally:
    torch.library.register_fake = _register_fake
from torch.utils.flop_counter import FlopCounterMode

import archc

# timm name -> (archc file, its parameters)
MODELS = {
    "mobilenetv4_conv_small": ("mobilenet_v4", {"variant": "conv_small"}),
    "mobilenetv4_conv_medium": ("mobilenet_v4", {"variant": "conv_medium"}),
    "mobilenetv4_hybrid_medium": ("mobilenet_v4", {"variant": "hybrid_medium"}),
    "mobilevit_xxs": ("mobilevit", {"variant": "xxs"}),
    "mobilevit_xs": ("mobilevit", {"variant": "xs"}),
    "mobilevit_s": ("mobilevit", {"variant": "s"}),
}
LINEAR = {"convolution", "addmm", "mm"}
MATMUL = {"bmm", "baddbmm"}


def counts(model, resolution: int) -> tuple[int, int]:
    """(conv + linear MACs, matmul MACs) of one image, by operator."""
    mode = FlopCounterMode(display=False)
    with mode, torch.no_grad():
        model(torch.randn(1, 3, resolution, resolution))
    # keys are aten overload packets ("aten.convolution"): the operator's name after the dot
    by_op = {str(k).split(".")[1]: v for k, v in mode.get_flop_counts()["Global"].items()}
    unknown = set(by_op) - LINEAR - MATMUL
    if unknown:
        raise SystemExit(f"operators not classified: {sorted(unknown)}")
    return (sum(v for k, v in by_op.items() if k in LINEAR) // 2,
            sum(v for k, v in by_op.items() if k in MATMUL) // 2)


def randomise(model, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
        for name, p in model.named_parameters():   # layer scales start at 1e-5: make them count
            if p.dim() == 1 and name.endswith("gamma"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)


def copy_weights(src, dst) -> None:
    """timm's state_dict into archc's module, in order; a linear weight into a 1 x 1 conv."""
    s, d = src.state_dict(), dst.state_dict()
    if len(s) != len(d):
        raise SystemExit(f"{len(s)} timm tensors but {len(d)} archc tensors")
    new = {}
    for (ks, vs), (kd, vd) in zip(s.items(), d.items()):
        if vs.numel() != vd.numel():
            raise SystemExit(f"timm {ks} {tuple(vs.shape)} does not fit archc {kd} "
                             f"{tuple(vd.shape)}")
        new[kd] = vs.reshape(vd.shape).clone()
    dst.load_state_dict(new)


def function(name: str, stem: str, params: dict, model, resolution: int) -> tuple:
    net = archc.load(stem, **params)
    ours = archc.build_module(stem, **params).eval()
    copy_weights(model, ours)
    x = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = model(x), ours(x)
    assert net.input_shape == (3, resolution, resolution), (name, net.input_shape)
    return float((got - want).abs().max() / want.abs().max()), float(want.abs().max())


def main() -> None:
    timm.layers.set_fused_attn(False)
    torch.manual_seed(0)
    out = {}
    for name, archc_ref in MODELS.items():
        model = timm.create_model(name, pretrained=False).eval()
        resolution = model.pretrained_cfg["input_size"][-1]
        lin, mm = counts(model, resolution)
        row = {
            "resolution": resolution,
            "params": sum(p.numel() for p in model.parameters()),
            "buffers": sum(b.numel() for n, b in model.named_buffers()
                           if not n.endswith("num_batches_tracked")),
            "macs_conv_linear": lin,
            "macs_matmul": mm,
            "output": list(model(torch.randn(1, 3, resolution, resolution)).shape[1:]),
        }
        randomise(model)
        try:
            row["max_rel_diff"], row["max_abs_logit"] = function(name, *archc_ref, model,
                                                                 resolution)
            row["archc"] = {"file": f"archs/{archc_ref[0]}.arch", "params_set": archc_ref[1]}
        except archc.ArchError as e:   # the library does not have this variant (yet)
            row["max_rel_diff"] = None
            row["archc"] = f"not in archc's library: {e.message}"
        out[name] = row
    print(json.dumps({
        "how": " ".join(__doc__.split("\n\n")[3].split()),
        "measured": {"date": datetime.date.today().isoformat(), "timm": timm.__version__,
                     "torch": torch.__version__, "torchvision": torchvision.__version__,
                     "python": platform.python_version()},
        "models": out}, indent=1))


if __name__ == "__main__":
    main()
