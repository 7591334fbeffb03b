"""The bundled networks that have a torchvision counterpart ARE the reference architecture:
torchvision's state_dict, renamed through a per-network name map, loads into the archc-built
module with no missing or unexpected keys and no shape mismatch, and both give the same logits
(to 1e-5) in eval mode.

Data-driven: to add a network, add an entry to MAPS (archc file stem -> torchvision builder,
constructor kwargs, archc parameters, and rename rules from torchvision keys to archc keys).
Networks not (yet) in archs/ are skipped. Skips when torchvision is absent.
"""
from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import _torchvision_names as N  # noqa: E402
import archc  # noqa: E402
from archc.compiler import library_dir  # noqa: E402


def _torchvision_models():
    """torchvision.models, or skip. Only the pure-Python model definitions are needed: when
    torchvision's compiled ops do not match the installed torch build (a CUDA wheel next to
    torch+cpu), retry without registering those ops."""
    try:
        import torchvision.models as models
        return models
    except ImportError:
        pytest.skip("torchvision is not installed")
    except RuntimeError:
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType(
            "torchvision._meta_registrations")
        try:
            import torchvision.models as models
            return models
        except Exception as err:  # noqa: BLE001
            pytest.skip(f"torchvision cannot be imported here: {err}")


# torchvision key -> archc key, first matching rule wins; (pattern, replacement) for re.sub.
_MOBILENET_V2 = [
    (r"^features\.0\.0\.", "features0.conv."), (r"^features\.0\.1\.", "features0.bn."),
    (r"^features\.18\.0\.", "features18.conv."), (r"^features\.18\.1\.", "features18.bn."),
    # expansion-1 block: conv.0 = depthwise ConvBNReLU, conv.1 = project conv, conv.2 = BN
    (r"^features\.1\.conv\.0\.0\.", "features1.dw.conv."),
    (r"^features\.1\.conv\.0\.1\.", "features1.dw.bn."),
    (r"^features\.1\.conv\.1\.", "features1.project.conv."),
    (r"^features\.1\.conv\.2\.", "features1.project.bn."),
    # the others: conv.0 = expand, conv.1 = depthwise, conv.2 = project conv, conv.3 = BN
    (r"^features\.(\d+)\.conv\.0\.0\.", r"features\1.expand.conv."),
    (r"^features\.(\d+)\.conv\.0\.1\.", r"features\1.expand.bn."),
    (r"^features\.(\d+)\.conv\.1\.0\.", r"features\1.dw.conv."),
    (r"^features\.(\d+)\.conv\.1\.1\.", r"features\1.dw.bn."),
    (r"^features\.(\d+)\.conv\.2\.", r"features\1.project.conv."),
    (r"^features\.(\d+)\.conv\.3\.", r"features\1.project.bn."),
    (r"^classifier\.1\.", "fc."),
]

_RESNET = [
    (r"^layer(\d)\.(\d+)\.downsample\.0\.", r"layer\1.block\2.downsample.conv."),
    (r"^layer(\d)\.(\d+)\.downsample\.1\.", r"layer\1.block\2.downsample.bn."),
    (r"^layer(\d)\.(\d+)\.", r"layer\1.block\2."),
    (r"^(conv1|bn1|fc)\.", r"\1."),
]
# torchvision's Sequential indices, prefixed with the layer kind (archc labels need a letter)
_FEATURES_CLASSIFIER = [(r"^features\.(\d+)\.", r"features.conv\1."),
                        (r"^classifier\.(\d+)\.", r"classifier.fc\1.")]
_SQUEEZENET = [(r"^features\.0\.", "features.conv0."),
               (r"^features\.(\d+)\.", r"features.fire\1."),
               (r"^classifier\.1\.", "classifier.conv1.")]

_GOOGLENET = [(r"^(inception\w+)\.branch(\d)\.(\d)\.", r"\1.branch\2_\3."), (r"^", "")]
_IDENTITY = [(r"^", "")]

MAPS = {
    # archc stem: (torchvision builder, builder kwargs, archc params, rules, input size)
    # A key "stem@case" is another configuration of archs/<stem>.arch.
    "mobilenet_v2": ("mobilenet_v2", {}, {}, _MOBILENET_V2, 224),
    "resnet": ("resnet50", {}, {"depth": 50}, _RESNET, 224),
    "vgg": ("vgg16", {}, {"config": "D"}, _FEATURES_CLASSIFIER, 224),
    "alexnet": ("alexnet", {}, {}, _FEATURES_CLASSIFIER, 224),
    "squeezenet": ("squeezenet1_0", {}, {"version": "1.0"}, _SQUEEZENET, 224),
    # the auxiliary heads as named outputs, compared with torchvision's GoogLeNetOutputs /
    # InceptionOutputs (which it returns in training mode only; see AUX_IN_TRAINING)
    "googlenet@aux": ("googlenet", {"aux_logits": True, "init_weights": False},
                      {"variant": "torchvision", "aux_logits": True}, _GOOGLENET, 224),
    "inception_v3@aux": ("inception_v3", {"aux_logits": True, "init_weights": False},
                         {"aux_logits": True}, _IDENTITY, 299),
    # the library of issue 13 (rename functions in tests/_torchvision_names.py); small
    # inputs where the size is not the point
    "shufflenet_v2": ("shufflenet_v2_x1_0", {}, {}, N.shufflenet_v2, 96),
    "efficientnet": ("efficientnet_b0", {}, {}, N.efficientnet, 96),
    "efficientnet@b5": ("efficientnet_b5", {}, {"variant": "b5"}, N.efficientnet, 64),
    "densenet": ("densenet121", {}, {}, N.densenet, 96),
    "regnet": ("regnet_x_400mf", {}, {}, N.regnet, 96),
    "regnet@y": ("regnet_y_400mf", {}, {"variant": "y_400mf"}, N.regnet, 96),
    "mnasnet": ("mnasnet0_5", {}, {"width": 0.5}, N.mnasnet, 96),
    "fcn": ("fcn_resnet50", {"weights_backbone": None, "aux_loss": True},
            {"aux": True, "resolution": 96}, N.fcn, 96),
    "deeplabv3": ("deeplabv3_resnet50", {"weights_backbone": None, "aux_loss": True},
                  {"aux": True, "resolution": 96}, N.deeplabv3, 96),
    "deeplabv3@mobilenet": ("deeplabv3_mobilenet_v3_large",
                            {"weights_backbone": None, "aux_loss": True},
                            {"backbone": "mobilenet_v3_large", "aux": True, "resolution": 96},
                            N.deeplabv3_mobilenet, 96),
    "lraspp": ("lraspp_mobilenet_v3_large", {"weights_backbone": None},
               {"resolution": 96}, N.lraspp, 96),
}
# torchvision computes these networks' aux heads only when the network is in training mode:
# the reference runs with its root module in training mode and every submodule (BN,
# dropout, the heads) in eval mode, which gives the eval-mode value of every output.
AUX_IN_TRAINING = {"googlenet@aux", "inception_v3@aux"}


def _outputs(value) -> dict:
    """A network's outputs by name: torchvision's namedtuples and dicts, archc's dicts; a
    single tensor is {None: tensor}."""
    if isinstance(value, dict):
        return dict(value)
    if hasattr(value, "_fields"):
        return dict(zip(value._fields, value))
    return {None: value}


def _rename(key: str, rules) -> str:
    if callable(rules):
        return rules(key)
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    raise AssertionError(f"no rename rule for torchvision key '{key}'")


@pytest.mark.parametrize("case", list(MAPS))
def test_same_logits_as_torchvision(case):
    stem = case.split("@")[0]
    if not (Path(library_dir()) / f"{stem}.arch").exists():
        pytest.skip(f"archs/{stem}.arch does not exist yet")
    models = _torchvision_models()
    builder, kwargs, params, rules, size = MAPS[case]
    torch.manual_seed(0)
    ref = _builder(models, builder)(weights=None, **kwargs).eval()
    if case in AUX_IN_TRAINING:
        ref.training = True
    with torch.no_grad():  # non-trivial BN statistics, so the BN mapping is exercised
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    ours = archc.build_module(stem, **params).eval()
    state = {_rename(k, rules): v for k, v in ref.state_dict().items()}
    result = ours.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = _outputs(ref(x)), _outputs(ours(x))
    assert list(got) == list(want)     # the same outputs, in the same order
    for name in want:
        assert got[name].shape == want[name].shape, name
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5, msg=name)


def _builder(models, name):
    """torchvision.models.<name>, or models.segmentation.<name>."""
    return getattr(models, name, None) or getattr(models.segmentation, name)
