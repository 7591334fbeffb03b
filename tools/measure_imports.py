"""Measure archc.weights.import_state_dict against timm and torchvision: for every bundled
network that either library also has, a randomly initialised model's state dict is imported
(matched by structure: order and shapes, no key renaming), loaded into archc's generated torch
module, and both run on the same input in eval mode. Writes tests/data/import_golden.json
(read by tests/test_import_weights.py; docs/weights.md lists the names).

timm and torchvision are not dependencies of archc or of its tests. Run this in a scratch
environment:

    python3 -m venv /tmp/wivenv
    /tmp/wivenv/bin/pip install torch==2.13.0 timm torchvision
    /tmp/wivenv/bin/pip install -e .
    /tmp/wivenv/bin/python tools/measure_imports.py                 # every case
    /tmp/wivenv/bin/python tools/measure_imports.py torchvision:resnet50

Each row: the library and its model name (and constructor keywords), the archc network and
parameters, the input size, and max |archc - reference| / max |reference| over the outputs
(`max_rel_diff`, which must be <= TOLERANCE). BN statistics and affine parameters are
randomised first, so the BN mapping is exercised (fresh BN layers are the identity).

torchvision's compiled extension (detection ops such as nms) may not load next to the CPU
torch build; its fake-kernel registration module is then replaced by an empty one (as
tools/measure_torchvision.py does): the models measured are pure torch.nn.
"""
from __future__ import annotations

import json
import platform
import sys
import types
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "import_golden.json"
TOLERANCE = 1e-5

# (library, model, constructor keywords, archc network, archc parameters, input size); small
# inputs where the size is not the point (VGG and AlexNet: 224, their classifiers' input is
# fixed by archc's resolution, torchvision pools adaptively)
TV, TIMM = "torchvision", "timm"
CASES = [
    (TV, "alexnet", {}, "alexnet", {}, 224),
    (TV, "vgg11", {}, "vgg", {"config": "A"}, 224),
    (TV, "vgg16", {}, "vgg", {"config": "D"}, 224),
    (TV, "vgg16_bn", {}, "vgg", {"config": "D", "batch_norm": True}, 224),
    (TV, "resnet18", {}, "resnet", {"depth": 18}, 96),
    (TV, "resnet50", {}, "resnet", {"depth": 50}, 96),
    (TV, "resnext50_32x4d", {}, "resnext", {"depth": 50}, 96),
    (TV, "squeezenet1_0", {}, "squeezenet", {"version": "1.0"}, 96),
    (TV, "squeezenet1_1", {}, "squeezenet", {"version": "1.1"}, 96),
    (TV, "googlenet", {"aux_logits": True, "init_weights": False}, "googlenet",
     {"variant": "torchvision", "aux_logits": True}, 224),
    (TV, "inception_v3", {"aux_logits": True, "init_weights": False}, "inception_v3",
     {"aux_logits": True}, 299),
    (TV, "mobilenet_v2", {}, "mobilenet_v2", {}, 96),
    (TV, "mobilenet_v3_large", {}, "mobilenet_v3", {"size": "large"}, 96),
    (TV, "mobilenet_v3_small", {}, "mobilenet_v3", {"size": "small"}, 96),
    (TV, "shufflenet_v2_x1_0", {}, "shufflenet_v2", {}, 96),
    (TV, "efficientnet_b0", {}, "efficientnet", {}, 96),
    (TV, "densenet121", {}, "densenet", {}, 96),
    (TV, "regnet_x_400mf", {}, "regnet", {}, 96),
    (TV, "regnet_y_400mf", {}, "regnet", {"variant": "y_400mf"}, 96),
    (TV, "mnasnet0_5", {}, "mnasnet", {"width": 0.5}, 96),
    (TV, "fcn_resnet50", {"weights_backbone": None, "aux_loss": True}, "fcn",
     {"aux": True, "resolution": 96}, 96),
    (TV, "deeplabv3_resnet50", {"weights_backbone": None, "aux_loss": True}, "deeplabv3",
     {"aux": True, "resolution": 96}, 96),
    (TV, "deeplabv3_mobilenet_v3_large", {"weights_backbone": None, "aux_loss": True},
     "deeplabv3", {"backbone": "mobilenet_v3_large", "aux": True, "resolution": 96}, 96),
    (TV, "lraspp_mobilenet_v3_large", {"weights_backbone": None}, "lraspp",
     {"resolution": 96}, 96),
    (TIMM, "resnet18", {}, "resnet", {"depth": 18}, 96),
    (TIMM, "resnet50", {}, "resnet", {"depth": 50}, 96),
    (TIMM, "resnext50_32x4d", {}, "resnext", {"depth": 50}, 96),
    (TIMM, "inception_v3", {}, "inception_v3", {}, 299),
    (TIMM, "densenet121", {}, "densenet", {}, 96),
    (TIMM, "mobilenetv2_100", {}, "mobilenet_v2", {}, 96),
    (TIMM, "efficientnet_b0", {}, "efficientnet", {}, 96),
    (TIMM, "mnasnet_100", {}, "mnasnet", {}, 96),
    (TIMM, "regnetx_004", {}, "regnet", {}, 96),
    (TIMM, "regnety_004", {}, "regnet", {"variant": "y_400mf"}, 96),
    (TIMM, "legacy_xception", {}, "xception", {}, 299),
    (TIMM, "convnext_atto", {}, "convnext", {"variant": "atto"}, 224),
    (TIMM, "mobilevit_xxs", {}, "mobilevit", {"variant": "xxs"}, 256),
    (TIMM, "mobilenetv4_conv_small", {}, "mobilenet_v4", {"variant": "conv_small"}, 224),
    (TIMM, "mobilenetv4_hybrid_medium", {}, "mobilenet_v4", {"variant": "hybrid_medium"}, 256),
    (TIMM, "repvgg_a0", {}, "repvgg", {"variant": "a0"}, 96),
    (TIMM, "mobileone_s0", {}, "mobileone", {"variant": "s0"}, 96),
]
# Not measured: timm's mobilenetv3_large_100 has the shapes of torchvision's MobileNetV3 (its
# weights import) but BN eps 1e-5 where torchvision and archc have 1e-3, so outputs differ.
# torchvision computes these networks' aux heads only in training mode: the root module is put
# in training mode and every submodule in eval mode (tests/test_torchvision_equivalence.py)
AUX_IN_TRAINING = {"googlenet", "inception_v3"}


def _libraries():
    sys.modules.setdefault("torchvision._meta_registrations",
                           types.ModuleType("torchvision._meta_registrations"))
    import timm
    import torchvision
    from torchvision import models
    return timm, torchvision, models


def _outputs(value) -> list:
    if isinstance(value, dict):
        return list(value.values())
    if hasattr(value, "_fields"):
        return list(value)
    if isinstance(value, (tuple, list)):
        return list(value)
    return [value]


def reference(library: str, model: str, kwargs: dict, libs):
    timm, _, models = libs
    if library == TIMM:
        return timm.create_model(model, pretrained=False, **kwargs)
    build = getattr(models, model, None) or getattr(models.segmentation, model)
    return build(weights=None, **kwargs)


def measure(case, libs) -> dict:
    import archc
    library, model, kwargs, network, params, size = case
    torch.manual_seed(0)
    ref = reference(library, model, kwargs, libs).eval()
    if library == TV and model in AUX_IN_TRAINING:
        ref.training = True
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    row = {"library": library, "model": model, "kwargs": kwargs, "network": network,
           "params": params, "input": size}
    try:
        tensors = archc.weights.import_state_dict(network, ref.state_dict(), **params)
    except archc.ArchError as err:
        return {**row, "passed": False, "error": err.message}
    ours = archc.build_module(network, **params).eval()
    ours.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = _outputs(ref(x)), _outputs(ours(x))
    if len(want) != len(got) or any(a.shape != b.shape for a, b in zip(want, got)):
        return {**row, "passed": False,
                "error": f"outputs differ in shape: {[tuple(a.shape) for a in want]} vs "
                         f"{[tuple(b.shape) for b in got]}"}
    rel = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(got, want))
    return {**row, "tensors": sum(1 for k in tensors if not k.endswith("num_batches_tracked")),
            "max_rel_diff": rel, "passed": rel <= TOLERANCE}


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    libs = _libraries()
    chosen = [c for c in CASES if not argv or f"{c[0]}:{c[1]}" in argv]
    doc = json.loads(OUT.read_text()) if OUT.exists() and argv else {}
    doc.update({"about": "import_state_dict against timm and torchvision, measured by "
                         "tools/measure_imports.py (its docstring defines each field)",
                "tolerance": TOLERANCE, "torch": torch.__version__,
                "timm": libs[0].__version__, "torchvision": libs[1].__version__,
                "python": platform.python_version()})
    rows = doc.setdefault("models", {})
    for case in chosen:
        key = f"{case[0]}:{case[1]}"
        try:
            rows[key] = measure(case, libs)
        except Exception as err:  # noqa: BLE001 - recorded as a failure, the others go on
            rows[key] = {"library": case[0], "model": case[1], "network": case[3],
                         "passed": False, "error": f"{type(err).__name__}: {err}"[:300]}
        r = rows[key]
        print(f"{key:<45} {r['network']:<14} "
              + (f"{r['max_rel_diff']:.2e}" if "max_rel_diff" in r else r.get("error", "")[:200]),
              flush=True)
    doc["models"] = {f"{c[0]}:{c[1]}": rows[f"{c[0]}:{c[1]}"] for c in CASES
                     if f"{c[0]}:{c[1]}" in rows}
    OUT.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
