"""The deploy transform (compiler/reparam.py, docs/reparam.md) and weights through it
(backends/reparam_weights.py): RepVGG's and MobileOne's train and deploy forms against timm's
counts, the deployed module equal to the training form in eval mode (torch, JAX, ONNX), the
rule on a grouped block with identity branches, sums it must leave alone, the CLI and API."""
from __future__ import annotations

import numpy as np
import pytest

import archc
from archc._cli import main
from archc.backends import weights as W
from archc.compiler import reparam

torch = pytest.importorskip("torch")

# timm 1.0.31 (byobnet.py), as measured for issue 25: train form -> reparameterize_model;
# params, conv + linear MACs at 224 x 224. The deployed forms have no buffers.
TIMM = {
    ("repvgg", "a0"): (9_108_968, 1_512_581_120, 8_309_384, 1_361_451_008),
    ("repvgg", "a1"): (14_092_264, 2_626_488_320, 12_789_864, 2_363_967_488),
    ("repvgg", "b0"): (15_817_960, 3_397_191_680, 14_339_048, 3_057_600_512),
    ("mobileone", "s0"): (5_293_272, 1_051_935_232, 2_078_504, 275_110_400),
    ("mobileone", "s1"): (4_825_192, 830_062_080, 4_764_840, 825_057_024),
}
TOL = 1e-5


@pytest.mark.parametrize("name,variant", sorted(TIMM))
def test_train_and_deploy_counts_equal_timm(name, variant):
    params, macs, dparams, dmacs = TIMM[name, variant]
    net = archc.load(name, variant=variant)
    t = archc.analyze(net).totals
    assert (t["params"], t["macs"]) == (params, macs)
    bn = [n for n in net.layers() if net.node(n)["op"] == "bn"]
    assert t["buffers"] == sum(2 * net.node(n)["shape"][0] for n in bn)
    d = archc.analyze(archc.deploy(net)).totals
    assert (d["params"], d["buffers"], d["macs"]) == (dparams, 0, dmacs)


def _random_weights(net, seed=0) -> dict:
    """The torch module's tensors, BN statistics and affine parameters randomised."""
    g = np.random.default_rng(seed)
    out = {}
    for k, v in archc.build_module(net).state_dict().items():
        v = v.numpy()
        if k.endswith("running_mean"):
            v = g.normal(0, 0.2, v.shape)
        elif k.endswith("running_var"):
            v = g.uniform(0.5, 2.0, v.shape)
        elif v.ndim == 1 and k.endswith(".weight"):
            v = g.normal(1, 0.2, v.shape)
        elif k.endswith(".bias"):
            v = g.normal(0, 0.2, v.shape)
        out[k] = np.asarray(v, dtype=v.dtype if v.dtype == np.int64 else np.float32)
    return out


def _module(net, tensors):
    m = archc.build_module(net)
    m.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in tensors.items()})
    return m.eval()


def _rel(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


def _forward(m, x):
    with torch.no_grad():
        return m(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name,variant", sorted(TIMM))
def test_deployed_module_equals_trained(name, variant):
    net = archc.load(name, variant=variant, resolution=32, classes=10)
    tensors = _random_weights(net)
    dnet, dtensors = archc.deploy(net, weights=tensors)
    assert set(dtensors) == W.torch_keys(dnet) | {k for k in dtensors
                                                  if k.endswith("num_batches_tracked")}
    assert not any(dnet.node(n)["op"] in ("bn", "add") for n in dnet.layers())
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    want = _forward(_module(net, tensors), x)
    assert _rel(_forward(_module(dnet, dtensors), x), want) <= TOL


def test_deployed_jax_and_onnx_equal_torch():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("jax")
    from _runtime import jax_with_weights
    net = archc.load("mobileone", variant="s0", resolution=32, classes=10)
    dnet, dtensors = archc.deploy(net, weights=_random_weights(net))
    x = np.random.default_rng(2).normal(size=(2, 3, 32, 32)).astype(np.float32)
    want = _forward(_module(dnet, dtensors), x)
    jm = jax_with_weights(dnet, dtensors)
    jm.eval()
    assert _rel(np.asarray(jm(np.transpose(x, (0, 2, 3, 1)))), want) <= TOL
    session = ort.InferenceSession(archc.build_onnx(dnet, weights=dtensors).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    assert _rel(session.run(None, {dnet.input: x})[0], want) <= TOL


GROUPED = """
network G(c: int = 8) {
    x = input(c, 8, 8)
    x = x -> stem: conv(c, kernel=3, padding=1)
    y = add(a: conv(x, c, kernel=3, padding=1, groups=2, bias=false) -> bn,
            b: conv(x, c, kernel=1, groups=2) -> bn, i: bn(x), x)
    z = dw: conv(y, c, kernel=[3, 5], padding=[1, 2], groups=c) -> bn
    return add(z, y) -> relu
}
"""


def test_grouped_identity_and_raw_input_branches_merge_and_keep_the_function():
    net = archc.load_source(GROUPED)
    fs = reparam.fusions(net)
    # the second sum is y's depthwise 3 x 5 conv + BN and y itself: linear in y too
    assert [(len(f.branches), f.kernel, f.groups) for f in fs] == [(4, (3, 3), 2), (2, (3, 5), 8)]
    tensors = _random_weights(net)
    dnet, dtensors = archc.deploy(net, weights=tensors)
    assert [dnet.node(n)["op"] for n in dnet.layers()] == ["conv", "conv", "conv", "relu"]
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 8)).astype(np.float32)
    want = _forward(_module(net, tensors), x)
    assert _rel(_forward(_module(dnet, dtensors), x), want) <= TOL


@pytest.mark.parametrize("name,params", [("sqnxt", {}), ("mobilenet_v2", {"resolution": 32})])
def test_folding_keeps_other_networks_function(name, params):
    """Any network deploys: its BNs after convs fold (their places pass through), blocks with
    an optional member (conv_norm_act's activation) included."""
    net = archc.load(name, **params)
    tensors = _random_weights(net)
    dnet, dtensors = archc.deploy(net, weights=tensors)
    assert not any(dnet.node(n)["op"] == "bn" for n in dnet.layers())
    x = np.random.default_rng(5).normal(size=(2, *net.input_shape)).astype(np.float32)
    want = _forward(_module(net, tensors), x)
    assert _rel(_forward(_module(dnet, dtensors), x), want) <= TOL


def test_sums_without_a_conv_stay():
    net = archc.load_source("network N() {\n x = input(4, 8, 8) -> conv(4, kernel=1)\n"
                            " return add(bn(x), x) -> relu\n}\n")
    assert reparam.fusions(net) == []
    assert archc.analyze(archc.deploy(net)).totals == archc.analyze(net).totals


def test_residual_sums_of_different_inputs_stay():
    net = archc.load("resnet", depth=18)
    dnet = archc.deploy(net)
    adds = [n for n in net.layers() if net.node(n)["op"] == "add"]
    assert [n for n in dnet.layers() if dnet.node(n)["op"] == "add"] == adds
    assert not any(dnet.node(n)["op"] == "bn" for n in dnet.layers())
    bn = sum(2 * net.node(n)["shape"][0] for n in net.layers() if net.node(n)["op"] == "bn")
    t, d = archc.analyze(net).totals, archc.analyze(dnet).totals
    assert d["params"] == t["params"] - bn // 2 and d["macs"] == t["macs"]


def test_cli_deploy_analyze_and_build_with_weights(tmp_path, capsys):
    net = archc.load("repvgg", resolution=32, classes=10)
    tensors = _random_weights(net)
    W.save(tmp_path / "train.safetensors", tensors)
    argv = ["repvgg", "-D", "resolution=32", "-D", "classes=10", "--deploy"]
    assert main(["analyze", *argv, "--format", "json"]) == 0
    import json
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals["params"] == archc.analyze(archc.deploy(net)).totals["params"]
    out = tmp_path / "rep.py"
    assert main(["build", *argv, "--weights", str(tmp_path / "train.safetensors"),
                 "-o", str(out), "-q"]) == 0
    dnet = archc.deploy(net)
    assert out.read_text() == archc.build_source(dnet)
    x = np.random.default_rng(4).normal(size=(1, 3, 32, 32)).astype(np.float32)
    got = _forward(_module(dnet, W.load(tmp_path / "rep.safetensors")), x)
    assert _rel(got, _forward(_module(net, tensors), x)) <= TOL
    ort = pytest.importorskip("onnxruntime")
    assert main(["build", *argv, "--backend", "onnx", "--weights",
                 str(tmp_path / "train.safetensors"), "-o", str(tmp_path / "rep.onnx"), "-q"]) == 0
    session = ort.InferenceSession(str(tmp_path / "rep.onnx"), providers=["CPUExecutionProvider"])
    assert _rel(session.run(None, {dnet.input: x})[0], got) <= TOL
    assert main(["view", *argv, "-o", str(tmp_path / "rep.html")]) == 0
    html = (tmp_path / "rep.html").read_text()
    assert "reparam_conv" in html and "conv_1x1" not in html
    # without -o there is nowhere to put the weights: a user error, exit 2
    assert main(["build", *argv, "--weights", str(tmp_path / "train.safetensors")]) == 2
    assert "give -o FILE" in capsys.readouterr().err


def test_deploy_api_errors():
    with pytest.raises(archc.ArchError, match="weights"):
        archc.deploy("repvgg", weights=3)
    with pytest.raises(archc.ArchError, match="missing"):
        archc.deploy("repvgg", weights={})
