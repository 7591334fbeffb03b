"""torchvision state_dict key -> archc key, for the library of issue 13 (used by
tests/test_torchvision_equivalence.py). Each function maps one torchvision key; torchvision's
Sequential indices become archc's labels as each archs/*.arch file documents them."""
from __future__ import annotations

import re

CNA = {"0": "conv", "1": "bn"}          # torchvision's Conv2dNormActivation: 0 conv, 1 bn


def _sub(key: str, rules) -> str:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    raise AssertionError(f"no rename rule for torchvision key '{key}'")


def shufflenet_v2(key: str) -> str:
    b1 = {"0": "dw.conv", "1": "dw.bn", "2": "pw.conv", "3": "pw.bn"}
    b2 = {"0": "pw1.conv", "1": "pw1.bn", "3": "dw.conv", "4": "dw.bn", "5": "pw2.conv",
          "6": "pw2.bn"}
    return _sub(key, [
        (r"^(conv1|conv5)\.(\d)\.", lambda m: f"{m[1]}.{CNA[m[2]]}."),
        (r"^stage(\d)\.(\d+)\.branch(\d)\.(\d)\.", lambda m: (
            f"stage{int(m[1]) - 1}.unit{m[2]}.branch{m[3]}."
            f"{(b1 if m[3] == '1' else b2)[m[4]]}.")),
        (r"^fc\.", "fc.")])


def efficientnet(key: str) -> str:
    def block(m):
        names = ["dw", "se", "project"] if m[1] == "1" else ["expand", "dw", "se", "project"]
        inner = m[4] if names[int(m[3])] == "se" else CNA[m[4]]
        return f"features{m[1]}.block{m[2]}.{names[int(m[3])]}.{inner}."
    return _sub(key, [
        (r"^features\.(0|8)\.(\d)\.", lambda m: f"features{m[1]}.{CNA[m[2]]}."),
        (r"^features\.(\d)\.(\d+)\.block\.(\d)\.(\w+)\.", block),
        (r"^classifier\.1\.", "fc.")])


def densenet(key: str) -> str:
    return _sub(key, [(r"^features\.", ""), (r"^classifier\.", "classifier.")])


def regnet(key: str) -> str:
    return _sub(key, [
        (r"^stem\.(\d)\.", lambda m: f"stem.{CNA[m[1]]}."),
        (r"^trunk_output\.block(\d)\.block\d-(\d+)\.proj\.(\d)\.",
         lambda m: f"block{m[1]}.b{m[2]}.proj.{CNA[m[3]]}."),
        (r"^trunk_output\.block(\d)\.block\d-(\d+)\.f\.se\.",
         lambda m: f"block{m[1]}.b{m[2]}.se."),
        (r"^trunk_output\.block(\d)\.block\d-(\d+)\.f\.(a|b|c)\.(\d)\.",
         lambda m: f"block{m[1]}.b{m[2]}.{m[3]}.{CNA[m[4]]}."),
        (r"^fc\.", "fc.")])


def mnasnet(key: str) -> str:
    inner = {"0": "conv0", "1": "bn1", "3": "conv3", "4": "bn4", "6": "conv6", "7": "bn7"}
    return _sub(key, [
        (r"^layers\.(\d+)\.(\d+)\.layers\.(\d)\.",
         lambda m: f"stack{int(m[1]) - 7}.unit{m[2]}.{inner[m[3]]}."),
        (r"^layers\.(\d+)\.", r"layers\1."),
        (r"^classifier\.1\.", "fc.")])


_FCN_HEAD = {"0": "conv0", "1": "bn1", "4": "conv4"}
_RESNET_BACKBONE = [
    (r"^backbone\.layer(\d)\.(\d+)\.downsample\.(\d)\.",
     lambda m: f"backbone.layer{m[1]}.block{m[2]}.downsample.{CNA[m[3]]}."),
    (r"^backbone\.layer(\d)\.(\d+)\.", r"backbone.layer\1.block\2."),
    (r"^backbone\.(conv1|bn1)\.", r"backbone.\1."),
]
_SE_BLOCKS = {4, 5, 6, 11, 12, 13, 14, 15}   # MobileNetV3-Large's features with SE


def _mbv3_backbone(m) -> str:
    i, k, rest = int(m[1]), int(m[2]), m[3]
    names = ["dw", "project"] if i == 1 else \
        ["expand", "dw", "se", "project"] if i in _SE_BLOCKS else ["expand", "dw", "project"]
    inner = rest if names[k] == "se" else CNA[rest]
    return f"backbone.features{i}.{names[k]}.{inner}."


def _heads(key: str, prefix_rules) -> str:
    aspp = {"0": "convs0", "1": "convs1", "2": "convs2", "3": "convs3"}
    return _sub(key, prefix_rules + [
        (r"^(aux_classifier|classifier)\.(\d)\.(weight|bias|running_\w+|num_batches_tracked)$",
         lambda m: f"{m[1]}.{_FCN_HEAD[m[2]]}.{m[3]}"),
    ])


def fcn(key: str) -> str:
    return _heads(key, _RESNET_BACKBONE)


def _deeplab_head(key: str):
    return [
        (r"^classifier\.0\.convs\.([0-3])\.(\d)\.", lambda m: f"classifier.aspp.convs{m[1]}."
                                                            f"{CNA[m[2]]}."),
        (r"^classifier\.0\.convs\.4\.(\d)\.",
         lambda m: f"classifier.aspp.convs4.{ {'1': 'conv', '2': 'bn'}[m[1]] }."),
        (r"^classifier\.0\.project\.(\d)\.", lambda m: f"classifier.aspp.project.{CNA[m[1]]}."),
        (r"^classifier\.([124])\.",
         lambda m: f"classifier.{ {'1': 'conv1', '2': 'bn2', '4': 'conv4'}[m[1]] }."),
    ]


def deeplabv3(key: str) -> str:
    return _heads(key, _deeplab_head(key) + _RESNET_BACKBONE)


def deeplabv3_mobilenet(key: str) -> str:
    return _heads(key, _deeplab_head(key) + [
        (r"^backbone\.(0|16)\.(\d)\.", lambda m: f"backbone.features{m[1]}.{CNA[m[2]]}."),
        (r"^backbone\.(\d+)\.block\.(\d)\.(\w+)\.", _mbv3_backbone)])


def lraspp(key: str) -> str:
    return _sub(key, [
        (r"^backbone\.(0|16)\.(\d)\.", lambda m: f"backbone.features{m[1]}.{CNA[m[2]]}."),
        (r"^backbone\.(\d+)\.block\.(\d)\.(\w+)\.", _mbv3_backbone),
        (r"^classifier\.cbr\.(\d)\.", lambda m: f"classifier.cbr.{CNA[m[1]]}."),
        (r"^classifier\.scale\.1\.", "classifier.scale.conv."),
        (r"^classifier\.(low|high)_classifier\.", r"classifier.\1_classifier.")])
