"""Measure torchvision's counts for every network of archc's library that torchvision has:
parameters, BN buffers and conv + linear MACs, one row per torchvision model (and input size).

torchvision is NOT a dependency of archc. Run this in a scratch environment next to archc's
torch 2.13 (CPU):

    python3 -m venv /tmp/tvenv
    /tmp/tvenv/bin/pip install torch==2.13.0 torchvision     # torchvision 0.28.0
    /tmp/tvenv/bin/python tools/measure_torchvision.py > tests/data/torchvision_counts.json

(The table in the repository was measured with torchvision 0.29.1, installed with --no-deps
next to torch 2.13.0; 0.28.0 gives the same numbers in every row.)

Counts: params = sum(p.numel() for p in m.parameters()); buffers = running_mean and
running_var elements (num_batches_tracked is a counter); macs = the multiply-accumulates of
every Conv2d (kh*kw*C_in/groups per output element), ConvTranspose2d (kh*kw*C_out/groups
per input element) and Linear (in*out per row) of one forward pass at the given resolution,
per image, counted with forward hooks on the meta device (shapes only, no arithmetic). The
pass is in eval mode, except for googlenet and inception_v3 with aux_logits=True: their
auxiliary classifiers run in training mode only, and archc's analysis counts every output
of the network, so those two are measured in training mode (at batch 2: BN in training mode
needs two values per channel, and the aux heads reach 1x1). tests/test_library.py compares
archc's static analysis with every row (docs/library-c.md).
"""
from __future__ import annotations

import datetime
import json
import platform
import sys
import types
import warnings

import torch

# torchvision's compiled extension (detection ops such as nms) does not load next to the
# CPU torch build here; its fake-kernel registration module is replaced by an empty one.
# The models measured are pure torch.nn (docs/library-c.md).
sys.modules["torchvision._meta_registrations"] = types.ModuleType(
    "torchvision._meta_registrations")
import torchvision  # noqa: E402
from torchvision import models  # noqa: E402
from torchvision.models import segmentation as seg  # noqa: E402

warnings.simplefilter("ignore")   # init warnings of googlenet / inception_v3 with weights=None

EFFICIENTNET_RES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456,
                    "b6": 528, "b7": 600}   # Tan & Le 2019, the resolution of each variant
REGNETS = ["x_400mf", "x_800mf", "x_1_6gf", "x_3_2gf", "x_8gf", "x_16gf", "x_32gf",
           "y_400mf", "y_800mf", "y_1_6gf", "y_3_2gf", "y_8gf", "y_16gf", "y_32gf", "y_128gf"]
SEG_RES = 520   # torchvision's segmentation weights evaluate at 520 (their transforms)


def _plain(name: str, resolution: int = 224, key: str | None = None, text: str = "",
           **kw) -> tuple:
    """(key, builder text, constructor, resolution, training mode) of
    models.<name>(weights=None, **kw)."""
    args = "".join(f", {k}={v!r}" for k, v in kw.items())
    return (key or name, f"{name}(weights=None{args}){text}",
            lambda: getattr(models, name)(weights=None, **kw), resolution,
            kw.get("aux_logits", False))


def cases() -> dict:
    """key -> (builder text, constructor, input resolution, training mode)."""
    rows = []
    # classification networks at 224 (ImageNet, 1000 classes)
    for name in ("alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
                 "vgg19", "vgg19_bn", "resnet18", "resnet34", "resnet50", "resnet101",
                 "resnet152", "resnext50_32x4d", "resnext101_32x8d", "squeezenet1_0",
                 "squeezenet1_1"):
        rows.append(_plain(name))
    # torchvision's builders keep aux_logits=True when no weights are given: measured both ways
    for name, resolution in (("googlenet", 224), ("inception_v3", 299)):
        for aux in (False, True):
            rows.append(_plain(name, resolution, key=name + ("_aux" if aux else ""),
                               aux_logits=aux, init_weights=False))
    rows.append(_plain("mobilenet_v2"))
    for w in (0.5, 1.4):
        rows.append(_plain("mobilenet_v2", key=f"mobilenet_v2_w{w}", width_mult=w))
    rows += [_plain("mobilenet_v3_large"), _plain("mobilenet_v3_small")]
    for w in ("0_5", "1_0", "1_5", "2_0"):
        rows.append(_plain(f"shufflenet_v2_x{w}"))
    for v, r in EFFICIENTNET_RES.items():
        rows.append(_plain(f"efficientnet_{v}", r))
    for d in (121, 161, 169, 201):
        rows.append(_plain(f"densenet{d}"))
    for v in REGNETS:
        rows.append(_plain(f"regnet_{v}"))
    for w in ("0_5", "0_75", "1_0", "1_3"):
        rows.append(_plain(f"mnasnet{w}"))
    # away from 224: the classifier's input is the last feature map as it is
    for name in ("vgg16", "alexnet"):
        rows.append(_plain(name, 160, key=f"{name}@160", text=" at 160x160"))
    for name in ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
                 "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"):
        for aux in (False, True):
            if aux and name.startswith("lraspp"):
                continue   # LR-ASPP has no auxiliary head
            rows.append((name + ("_aux" if aux else ""),
                         f"segmentation.{name}(weights=None, weights_backbone=None, "
                         f"aux_loss={aux})",
                         lambda n=name, a=aux: getattr(seg, n)(weights=None,
                                                               weights_backbone=None,
                                                               aux_loss=a), SEG_RES, False))
    out = {}
    for key, *row in rows:
        assert key not in out, key
        out[key] = tuple(row)
    return out


def macs(model, resolution: int, train: bool, batch: int = 2) -> int:
    total = [0]

    def conv(m, inputs, out):
        kh, kw = m.kernel_size
        if isinstance(m, torch.nn.ConvTranspose2d):
            total[0] += kh * kw * (m.out_channels // m.groups) * inputs[0].numel()
        else:
            total[0] += kh * kw * (m.in_channels // m.groups) * out.numel()

    def linear(m, inputs, out):
        total[0] += m.in_features * m.out_features * (out.numel() // m.out_features)
    hooks = []
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear))
    model = model.to("meta").train(train)
    with torch.no_grad():
        model(torch.empty(batch, 3, resolution, resolution, device="meta"))
    for h in hooks:
        h.remove()
    assert total[0] % batch == 0
    return total[0] // batch


def main() -> None:
    out = {
        "how": "params: sum(p.numel() for p in m.parameters()); buffers: running_mean + "
               "running_var elements; macs: Conv2d / ConvTranspose2d / Linear multiply-"
               "accumulates of one forward pass at `resolution`, per image, by forward hooks "
               "on the meta device, in eval mode (in training mode with aux_logits=True, "
               "whose auxiliary classifiers run only then). Measured with "
               "tools/measure_torchvision.py.",
        "note": "torchvision's compiled extension does not load next to the CPU torch build; "
                "the script replaces torchvision._meta_registrations with an empty module "
                "(the models are pure torch.nn, so the counts do not depend on it).",
        "torchvision": torchvision.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "models": {},
    }
    for name, (text, make, resolution, train) in cases().items():
        torch.manual_seed(0)
        m = make()
        out["models"][name] = {
            "builder": text, "resolution": resolution,
            "params": sum(p.numel() for p in m.parameters()),
            "buffers": sum(b.numel() for n, b in m.named_buffers()
                           if not n.endswith("num_batches_tracked")),
            "macs": macs(m, resolution, train),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
