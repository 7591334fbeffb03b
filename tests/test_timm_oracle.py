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


def test_every_variant_is_measured():
    """Every variant of the networks written after timm's models is in the file."""
    variants = {"convnext": ("atto", "femto", "pico", "nano", "tiny"),
                "mobilenetv4": ("conv_small", "conv_medium", "hybrid_medium"),
                "mobilevit": ("xxs", "xs", "s"), "repvgg": ("a0", "a1", "b0"),
                "mobileone": ("s0", "s1")}
    assert set(MODELS) == {f"{family}_{v}" for family, vs in variants.items() for v in vs}
    assert DATA["timm"].startswith("1.")


def test_the_issue_numbers_are_the_measured_ones():
    """The counts timm 1.0.31 gave under fvcore (params, conv + linear MACs, matmul MACs) when
    the work was planned, against this file's measurement with torch's counter."""
    planned = {"convnext_atto": (3695520, 547332480, 0),
               "convnext_tiny": (28589128, 4455531264, 0),
               "mobilevit_xxs": (1272024, 329179648, 78184448),
               "mobilevit_s": (5578632, 1823196160, 177635328),
               "mobilenetv4_conv_small": (3774024, 186005568, 0)}
    for name, want in planned.items():
        m = MODELS[name]
        assert (m["params"], m["macs"]["conv_linear"], m["macs"]["matmul"]) == want, name


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
    assert totals["matmul_macs"] == row["macs"]["matmul"]
    assert [_shape(net.node(n)["shape"]) for _, n in net.output_list()] == row["outputs"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_timm_weights_gave_timms_function(name):
    f = MODELS[name]["function"]
    assert f["tolerance"] <= 1e-5
    assert f["ok"] and 0 <= f["max_rel_diff"] <= f["tolerance"]


@pytest.mark.parametrize("name", sorted(n for n in MODELS if "deploy" in MODELS[n]))
def test_deployed_form_equals_timms_reparameterized_model(name):
    """archc.deploy's single-branch network against timm's reparameterize_model."""
    row = MODELS[name]
    want = row["deploy"]
    totals = archc.analyze(archc.deploy(row["archc"]["network"], **row["archc"]["params"])).totals
    assert (totals["params"], totals["buffers"]) == (want["params"], want["buffers"])
    assert totals["macs"] == want["macs"]["conv_linear"] + want["macs"]["matmul"]


def test_the_reparameterized_families_are_measured_deployed():
    assert {n for n in MODELS if "deploy" in MODELS[n]} == {
        "repvgg_a0", "repvgg_a1", "repvgg_b0", "mobileone_s0", "mobileone_s1"}
