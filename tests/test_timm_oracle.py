"""archc's analysis against timm's own counts: tests/data/timm_counts.json, measured by
tools/measure_timm.py in a scratch environment with timm (not a test dependency). Every row
names the archc network and parameters that build the timm model; params, buffers, MACs
(conv + linear, plus matrix products between activations) and output shapes must be equal,
and the tool's function check (timm's weights in archc's generated torch module) must have
passed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import archc

DATA = json.loads((Path(__file__).resolve().parent / "data" / "timm_counts.json").read_text())
MODELS = DATA["models"]


def test_every_convnext_variant_is_measured():
    assert {n for n in MODELS if n.startswith("convnext_")} == \
        {f"convnext_{v}" for v in ("atto", "femto", "pico", "nano", "tiny")}
    assert DATA["timm"].startswith("1.")


def _shape(shape) -> list:
    c, h, w = shape
    return [c] if (h, w) == (1, 1) else [c, h, w]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_analysis_equals_timm(name):
    row = MODELS[name]
    net = archc.load(row["archc"]["network"], **row["archc"]["params"])
    c, h, w = row["input"]
    assert net.input_shape == (c, h, w), "the default resolution is timm's"
    totals = archc.analyze(net).totals
    assert totals["params"] == row["params"]
    assert totals["buffers"] == row["buffers"]
    assert totals["macs"] == row["macs"]["conv_linear"] + row["macs"]["matmul"]
    assert [_shape(net.node(n)["shape"]) for _, n in net.output_list()] == row["outputs"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_timm_weights_gave_timms_function(name):
    f = MODELS[name]["function"]
    assert f["tolerance"] <= 1e-5
    assert f["ok"] and 0 <= f["max_rel_diff"] <= f["tolerance"]
