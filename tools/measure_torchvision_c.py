"""Measure torchvision's counts for the library of issue 13 (part C): parameters, BN buffers
and conv + linear MACs of ShuffleNet V2, EfficientNet, DenseNet, RegNet, MnasNet and the
segmentation networks (FCN, DeepLabV3, LR-ASPP), and of VGG-16 / AlexNet away from 224.

torchvision is NOT a dependency of archc. Run once in a scratch install, next to archc's
torch 2.13 (CPU):

    pip download --no-deps -d /tmp/wheels "torchvision==0.29.1"
    pip install --no-deps --target /tmp/tv /tmp/wheels/torchvision-0.29.1-*.whl
    PYTHONPATH=/tmp/tv python tools/measure_torchvision_c.py > tests/data/torchvision_counts_c.json

Counts: params = sum(p.numel() for p in m.parameters()); buffers = running_mean and
running_var elements (num_batches_tracked is a counter); macs = the multiply-accumulates of
every Conv2d (kh*kw*C_in/groups per output element), ConvTranspose2d (kh*kw*C_out/groups
per input element) and Linear (in*out per row) in one forward pass at batch 1 and the
given resolution, counted with forward hooks on the meta device (shapes only, no
arithmetic). tests/test_library_c.py compares archc's static analysis with these numbers.
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
# The models measured are pure torch.nn.
sys.modules["torchvision._meta_registrations"] = types.ModuleType(
    "torchvision._meta_registrations")
import torchvision  # noqa: E402
from torchvision import models  # noqa: E402
from torchvision.models import segmentation as seg  # noqa: E402

warnings.simplefilter("ignore")

EFFICIENTNET_RES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456,
                    "b6": 528, "b7": 600}   # Tan & Le 2019, the resolution of each variant
REGNETS = ["x_400mf", "x_800mf", "x_1_6gf", "x_3_2gf", "x_8gf", "x_16gf", "x_32gf",
           "y_400mf", "y_800mf", "y_1_6gf", "y_3_2gf", "y_8gf", "y_16gf", "y_32gf", "y_128gf"]
SEG_RES = 520   # torchvision's segmentation weights evaluate at 520 (their transforms)


def cases() -> dict:
    """name -> (builder text, constructor, input resolution)."""
    out = {}
    for w in ("0_5", "1_0", "1_5", "2_0"):
        name = f"shufflenet_v2_x{w}"
        out[name] = (f"{name}(weights=None)", lambda n=name: getattr(models, n)(weights=None),
                     224)
    for v, r in EFFICIENTNET_RES.items():
        name = f"efficientnet_{v}"
        out[name] = (f"{name}(weights=None)", lambda n=name: getattr(models, n)(weights=None), r)
    for d in (121, 161, 169, 201):
        name = f"densenet{d}"
        out[name] = (f"{name}(weights=None)", lambda n=name: getattr(models, n)(weights=None),
                     224)
    for v in REGNETS:
        name = f"regnet_{v}"
        out[name] = (f"{name}(weights=None)", lambda n=name: getattr(models, n)(weights=None),
                     224)
    for w in ("0_5", "0_75", "1_0", "1_3"):
        name = f"mnasnet{w}"
        out[name] = (f"{name}(weights=None)", lambda n=name: getattr(models, n)(weights=None),
                     224)
    for name in ("vgg16", "alexnet"):
        out[f"{name}@160"] = (f"{name}(weights=None) at 160x160",
                              lambda n=name: getattr(models, n)(weights=None), 160)
    for name in ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
                 "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"):
        for aux in (False, True):
            if aux and name.startswith("lraspp"):
                continue   # LR-ASPP has no auxiliary head
            key = name + ("_aux" if aux else "")
            out[key] = (f"segmentation.{name}(weights=None, weights_backbone=None, "
                        f"aux_loss={aux})",
                        lambda n=name, a=aux: getattr(seg, n)(weights=None,
                                                              weights_backbone=None,
                                                              aux_loss=a), SEG_RES)
    return out


def macs(model, resolution: int) -> int:
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
    model = model.to("meta").eval()
    with torch.no_grad():
        model(torch.empty(1, 3, resolution, resolution, device="meta"))
    for h in hooks:
        h.remove()
    return total[0]


def main() -> None:
    out = {
        "how": "params: sum(p.numel() for p in m.parameters()); buffers: running_mean + "
               "running_var elements; macs: Conv2d / ConvTranspose2d / Linear multiply-"
               "accumulates of one forward pass at batch 1 and `resolution`, by forward hooks "
               "on the meta device. Measured with tools/measure_torchvision_c.py.",
        "note": "torchvision's compiled extension does not load next to the CPU torch build; "
                "the script replaces torchvision._meta_registrations with an empty module "
                "(the models are pure torch.nn, so the counts do not depend on it).",
        "torchvision": torchvision.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "models": {},
    }
    for name, (text, make, resolution) in cases().items():
        torch.manual_seed(0)
        m = make()
        out["models"][name] = {
            "builder": text, "resolution": resolution,
            "params": sum(p.numel() for p in m.parameters()),
            "buffers": sum(b.numel() for n, b in m.named_buffers()
                           if not n.endswith("num_batches_tracked")),
            "macs": macs(m, resolution),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
