"""The ONNX backend (issue 15, part 3): every bundled network and a network using every op
pass onnx.checker's full check (which also infers every layer's shape and compares it with
the IR's) and give the torch module's outputs in onnxruntime with the same weights; names,
BN folding, metadata, the CLI and its errors."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

import archc  # noqa: E402
from archc._cli import main  # noqa: E402
from archc.backends import onnx_backend, torch_backend  # noqa: E402
from archc.backends import weights as W  # noqa: E402
from archc.compiler import ArchError, bundled_networks, ops  # noqa: E402

from _runtime import DEV_LOOP_NETWORKS, slow_unless  # noqa: E402  (tests/)
from test_torch_backend import ALL_OPS  # noqa: E402

RESOLUTIONS = (32, 64, 96, 128, 160, 224)   # the smallest at which a network elaborates
TOL = 1e-4                                  # of the output's largest magnitude


def _small(name: str, **params):
    """A bundled network at its smallest resolution of RESOLUTIONS (10 classes), else as is."""
    defaults = archc.load(name, **params).params
    if "classes" in defaults:
        params["classes"] = 10
    for r in RESOLUTIONS if "resolution" in defaults else ():
        try:
            return archc.load(name, resolution=r, **params)
        except ArchError:
            continue
    return archc.load(name, **params)


EVEN_LRN = """
network EvenLrn() {
    x = input(6, 5, 5)
    return x -> c: conv(8, kernel=1) -> n: lrn(4, alpha=0.5, beta=0.75, k=1.5)
             -> n2: lrn(2, alpha=0.3)
}
"""
# Named outputs: one is a BN layer (folded: its value is the conv's), two are one layer, one
# is named as its layer; the ops of _ops_resample.py where ALL_OPS leaves a case out (nearest
# to a size that is no multiple, bilinear by a scale and to a size of 1, adaptive pools over
# bins of unequal sizes and along one axis only, odd crops, transposed convs with stride 3
# and with an output padding of at least the stride).
NAMED = """
network Named() {
    x = input(3, 9, 11)
    y = x -> c: conv(4, kernel=3, padding=1) -> feat: bn
    h = y -> conv1: conv(6, kernel=1) -> r: relu
    g = y -> gp: global_avgpool -> fl: flatten -> fc: linear(3)
    return outputs(feature=y, logits=g, scores=g, r=h)
}
"""
RESAMPLE = """
network Resample() {
    x = input(6, 7, 10)
    a = x -> n1: upsample(size=[11, 13]) -> n2: upsample(size=[5, 4]) -> n3: upsample([3, 2])
    b = x -> b1: upsample(2, mode="bilinear") -> b2: upsample(size=[9, 23], mode="bilinear")
          -> b3: upsample(size=[4, 6], mode="bilinear", align_corners=true)
    c = x -> p1: adaptive_avgpool([3, 4]) -> p2: adaptive_maxpool([3, 3])
          -> p3: adaptive_avgpool([2, 3]) -> up: upsample(size=[4, 6])
    d = x -> m1: adaptive_maxpool([7, 3]) -> m2: adaptive_avgpool([2, 3]) -> up2: upsample(2)
    e = x -> ct: conv_transpose(9, kernel=[2, 3], stride=3, output_padding=[0, 2])
          -> ps: pixel_unshuffle(2) -> sh: channel_shuffle(3) -> px: pixel_shuffle(3)
          -> cr: crop([5, 6]) -> ap: adaptive_avgpool([4, 6]) -> dp: drop_path(0.5)
    f = x -> o1: upsample(size=[1, 3], mode="bilinear")
          -> o2: upsample(size=[5, 1], mode="bilinear")
          -> o3: adaptive_avgpool([1, 4]) -> o4: upsample(size=[3, 4], mode="bilinear")
    # output_padding >= stride (allowed below the dilation): end pads, or zeros padded after
    g = x -> ctp: conv_transpose(4, kernel=3, dilation=3, output_padding=[2, 1], padding=[2, 1])
    h = x -> ctz: conv_transpose(4, kernel=2, dilation=2, output_padding=1, bias=false)
    return outputs(a=a, b=b, c=c, d=d, e=e, f=f, g=g, h=h)
}
"""
NETS = {name: (lambda name=name: _small(name)) for name in bundled_networks()}
NETS["named"] = lambda: archc.load_source(NAMED)
NETS["resample"] = lambda: archc.load_source(RESAMPLE)
NETS["all_ops"] = lambda: archc.load_source(ALL_OPS)
NETS["even_lrn"] = lambda: archc.load_source(EVEN_LRN)
NETS["googlenet-torchvision-aux"] = lambda: _small("googlenet", variant="torchvision",
                                                   aux_logits=True)


@pytest.fixture(scope="session")
def reference():
    """name -> (net, weights, input, torch output): the torch module at seed 0 with random
    BN statistics and affine parameters (so that BN and its folding do something), eval mode."""
    cache = {}

    def get(name):
        if name not in cache:
            net = NETS[name]()
            torch.manual_seed(0)
            module = torch_backend.compile_module(net).eval()
            rng = np.random.RandomState(0)
            sd = W.state_dict_numpy(module)
            for key, v in sd.items():
                if key.endswith(("running_mean", "bias")) and v.dtype.kind == "f":
                    sd[key] = (v + 0.1 * rng.randn(*v.shape)).astype(np.float32)
                elif key.endswith("running_var") or (key.endswith("weight") and v.ndim == 1):
                    sd[key] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
            module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
            x = rng.randn(2, *net.input_shape).astype(np.float32)
            y = _torch(module, x)
            cache[name] = (net, sd, x, y)
        return cache[name]
    return get


def _torch(module, x):
    """The module's output; a list of every output's for a network with named outputs."""
    with torch.no_grad():
        y = module(torch.from_numpy(x))
    return [v.numpy() for v in y.values()] if isinstance(y, dict) else y.numpy()


def _run(model, net, x, every=False):
    """The graph's first output, or the list of all of them (every=True)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    ys = session.run(None, {net.input: x})
    return ys if every else ys[0]


def _close(got, want):
    """Each output within TOL of its largest magnitude."""
    got, want = (got, want) if isinstance(want, list) else ([got], [want])
    assert len(got) == len(want)
    for g, y in zip(got, want):
        assert g.shape == y.shape
        scale = max(float(np.abs(y).max()), 1e-6)
        assert np.abs(g - y).max() <= TOL * scale, (np.abs(g - y).max(), scale)


@pytest.mark.parametrize("fold", [False, True], ids=["bn", "fold-bn"])
@pytest.mark.parametrize("name", slow_unless(   # the tests' own small networks stay in the loop
    list(NETS), lambda n: n in DEV_LOOP_NETWORKS or n not in bundled_networks()))
def test_checker_and_onnxruntime_agree_with_torch(reference, name, fold):
    net, sd, x, y = reference(name)
    model = onnx_backend.build_model(net, weights=sd, fold_bn=fold)
    onnx.checker.check_model(model, full_check=True)   # strict: inferred shapes == the IR's
    _close(_run(model, net, x, every=isinstance(y, list)), y)
    if net.outputs:   # one graph output per named output, named after it, in order
        assert [o.name for o in model.graph.output] == [k for k, _ in net.outputs]
    names = {n.name for n in model.graph.node}
    inits = {i.name for i in model.graph.initializer}
    bns = [n for n in net.layers() if net.node(n)["op"] == "bn"]
    if not fold:
        assert set(net.layers()) <= names                   # one node per layer, its name
        assert inits == {k for k in sd if not k.endswith("num_batches_tracked")}
        assert not json.loads(_props(model)["archc.bn_folded"])
        return
    folded = json.loads(_props(model)["archc.bn_folded"])
    assert set(folded) <= set(bns)
    assert not {k for k in inits if k.rsplit(".", 1)[0] in folded}   # no BN tensors left
    assert set(net.layers()) - set(folded) <= names
    if name in ("se_sqnxt", "resnet", "all_ops", "mobilenet_v2"):
        assert folded and "BatchNormalization" not in {n.op_type for n in model.graph.node}


def _props(model) -> dict:
    return {p.key: p.value for p in model.metadata_props}


def test_all_ops_network_uses_every_registry_op():
    net = archc.load_source(ALL_OPS)
    assert {net.node(n)["op"] for n in net.graph.nodes} == set(ops.REGISTRY)
    assert set(ops.REGISTRY) - {"input"} <= set(onnx_backend.LOWER)


def test_fold_covers_a_bias_free_conv_and_a_linear_layer(reference):
    """ALL_OPS: c1 (conv, bias=false) -> b1 and fa (linear) -> bn2 both fold; the folded
    linear output is made NCHW where torch's BN made it so (an Unsqueeze named bn2)."""
    net, sd, x, y = reference("all_ops")
    model = onnx_backend.build_model(net, weights=sd, fold_bn=True)
    assert json.loads(_props(model)["archc.bn_folded"]) == {"b1": "c1", "bn2": "fa"}
    nodes = {n.name: n for n in model.graph.node}
    assert nodes["c1"].input[2] == "c1.bias" and "'b1' folded in" in nodes["c1"].doc_string
    assert nodes["bn2"].op_type == "Unsqueeze"


def test_metadata_holds_the_analysis(reference):
    net, sd, _, _ = reference("se_sqnxt")
    model = onnx_backend.build_model(net, weights=sd)
    props = _props(model)
    analysis = archc.analyze(net)
    layers = json.loads(props["archc.layers"])
    assert [lc["name"] for lc in layers] == net.layers()
    for lc, ref in zip(layers, analysis.layers):
        assert (lc["op"], lc["params"], lc["macs"], lc["elementwise_ops"], lc["activations"]) == \
            (ref.op, ref.params, ref.macs, ref.elementwise_ops, ref.activations)
    assert json.loads(props["archc.totals"])["macs"] == analysis.totals["macs"]
    assert json.loads(props["archc.parameters"])["resolution"] == 32
    assert props["archc.opset"] == "17" and model.opset_import[0].version == onnx_backend.OPSET
    conv = next(n for n in model.graph.node if n.name == "stage3.block2.conv1.conv")
    assert f"MACs {analysis.layer('stage3.block2.conv1.conv').macs}," in conv.doc_string
    assert model.producer_name == "archc" and model.graph.name == net.name


def test_names_python_treats_differently(reference):
    """Initializers are the torch state_dict keys even where a label had to be renamed."""
    from test_codegen import CLASH
    net = archc.load_source(CLASH)
    torch.manual_seed(0)
    module = torch_backend.compile_module(net).eval()
    sd = W.state_dict_numpy(module)
    model = onnx_backend.build_model(net, weights=sd)
    onnx.checker.check_model(model, full_check=True)
    assert {i.name for i in model.graph.initializer} == \
        {k for k in sd if not k.endswith("num_batches_tracked")}
    assert set(net.layers()) <= {n.name for n in model.graph.node}
    x = np.random.RandomState(0).randn(2, *net.input_shape).astype(np.float32)
    y = _torch(module, x)
    np.testing.assert_allclose(_run(model, net, x), y, rtol=0, atol=TOL * np.abs(y).max())


def test_an_output_named_like_another_layer_keeps_its_name():
    """The graph output `logits` is the output's name; the layer `logits` (another layer)
    is renamed `logits_`, as a value named like a weight is."""
    net = archc.load_source("""network N() {
        x = input(3, 6, 6)
        h = x -> logits: conv(4, kernel=1) -> a: relu
        g = h -> gp: global_avgpool -> fl: flatten -> fc: linear(2)
        return outputs(logits=g, features=h)
    }""")
    torch.manual_seed(0)
    module = torch_backend.compile_module(net).eval()
    model = onnx_backend.build_model(net, weights=W.state_dict_numpy(module))
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["logits", "features"]
    nodes = {n.name: n for n in model.graph.node}
    assert nodes["logits_"].op_type == "Conv" and list(nodes["logits"].input) == ["fc"]
    x = np.random.RandomState(0).randn(2, *net.input_shape).astype(np.float32)
    _close(_run(model, net, x, every=True), _torch(module, x))


def test_an_output_named_like_the_graph_input_is_an_error():
    net = archc.load_source("""network N() {
        x = input(3, 6, 6)
        return outputs(input=x -> c: conv(4, kernel=1))
    }""")
    with pytest.raises(ArchError, match="no output can have that name") as e:
        onnx_backend.build_model(net, weights={})
    assert e.value.span is not None and "output 'input'" in e.value.message
    assert "^" in e.value.format()          # the excerpt with its caret


def test_a_value_named_like_a_weight_gets_another_name():
    """conv `eval` has the torch path `eval_`, so its weight is `eval_.weight`: the layer
    `weight` of the block call `eval_` is the value `eval_.weight_`."""
    net = archc.load_source("""block b(x: tensor) { return weight: relu(x) }
    network N() {
        x = input(3, 4, 4) -> eval: conv(4, kernel=1)
        return eval_: b(x)
    }""")
    model = archc.build_onnx(net)
    onnx.checker.check_model(model, full_check=True)
    assert [n.name for n in model.graph.node] == ["eval", "eval_.weight_"]
    assert {i.name for i in model.graph.initializer} == {"eval_.weight", "eval_.bias"}


def test_missing_packages_are_clear_errors(monkeypatch):
    net = archc.load("se_sqnxt")
    monkeypatch.setitem(sys.modules, "torch", None)     # `import torch` raises ImportError
    with pytest.raises(ArchError, match="torch is not installed") as e:
        onnx_backend.build_model(net)
    assert "--weights" in e.value.hint
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ArchError, match="needs the onnx package") as e:
        onnx_backend.build_model(net, weights={})
    assert "archc[onnx]" in e.value.hint


def test_default_weights_are_the_torch_modules_at_seed_0():
    net = _small("sqnxt", stages=[1, 1, 1, 1])
    model = archc.build_onnx(net)
    torch.manual_seed(0)
    sd = W.state_dict_numpy(torch_backend.compile_module(net))
    got = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert set(got) == {k for k in sd if not k.endswith("num_batches_tracked")}
    assert all(np.array_equal(got[k], sd[k]) for k in got)
    assert _props(model)["archc.weights"] == "torch initialisation (xavier_uniform), seed 0"
    other = archc.build_onnx(net, weight_init="kaiming_normal")
    assert "kaiming_normal" in _props(other)["archc.weights"]
    assert archc.build_onnx(net).SerializeToString() == model.SerializeToString()


def test_missing_lowering_is_a_positioned_error(monkeypatch):
    net = archc.load("se_sqnxt")
    monkeypatch.delitem(onnx_backend.LOWER, "mul")
    with pytest.raises(ArchError, match="the onnx backend cannot lower op 'mul'") as e:
        onnx_backend.build_model(net, weights={})
    assert e.value.span is not None and e.value.hint


def test_build_source_points_to_build_onnx():
    with pytest.raises(ArchError, match="binary") as e:
        archc.build_source("se_sqnxt", backend="onnx")
    assert "build_onnx" in e.value.hint


# ---- the CLI ---------------------------------------------------------------------------------
def _cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_cli_writes_the_model_with_trained_weights(tmp_path, capsys, reference):
    net, sd, x, y = reference("se_sqnxt")
    W.save(tmp_path / "model.safetensors", sd)
    out = tmp_path / "net.onnx"
    code, err = _cli(capsys, "build", "se_sqnxt", "-D", "classes=10", "-D", "resolution=32",
                     "--backend", "onnx", "--weights", str(tmp_path / "model.safetensors"),
                     "-o", str(out))
    assert code == 0, err
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert _props(model)["archc.weights"] == "model.safetensors"
    np.testing.assert_allclose(_run(model, net, x), y, rtol=0, atol=TOL * np.abs(y).max())
    code, err = _cli(capsys, "build", "se_sqnxt", "--backend", "onnx", "--fold-bn",
                     "--weights", str(tmp_path / "model.safetensors"), "-o", str(out))
    assert code == 0, err
    folded = onnx.load(str(out))
    np.testing.assert_allclose(_run(folded, net, x), y, rtol=0, atol=TOL * np.abs(y).max())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "net.onnx"]


@pytest.mark.parametrize("edit, needle", [
    (lambda sd: sd.pop("stage2.block1.conv1.conv.weight"),
     "weights for layer 'stage2.block1.conv1.conv' are missing"),
    (lambda sd: sd.__setitem__("bn1.running_var", np.ones(3, np.float32)),
     "'bn1.running_var' has shape (3,); layer 'bn1' needs (64,)"),
    (lambda sd: sd.__setitem__("head.weight", np.ones(3, np.float32)),
     "tensor(s) that no layer of SESqueezeNext has: head.weight"),
    (lambda sd: sd.__setitem__("fc.bias", np.ones(10, np.int64)), "holds int64 values"),
])
def test_cli_bad_weights_exit_2_and_write_nothing(tmp_path, capsys, reference, edit, needle):
    _, sd, _, _ = reference("se_sqnxt")
    sd = dict(sd)
    edit(sd)
    W.save(tmp_path / "w.safetensors", sd)
    out = tmp_path / "net.onnx"
    out.write_text("keep me")
    code, err = _cli(capsys, "build", "se_sqnxt", "-D", "classes=10", "--backend", "onnx",
                     "--weights", str(tmp_path / "w.safetensors"), "-o", str(out))
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert out.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx", "w.safetensors"]


@pytest.mark.parametrize("argv, needle", [
    (["--backend", "onnx"], "give -o FILE"),
    (["--weights", "w.safetensors", "-o", "x.py"], "options of --backend onnx"),
    (["--fold-bn"], "options of --backend onnx"),
    (["--backend", "onnx", "--weights", "nowhere.safetensors", "-o", "x.onnx"],
     "cannot read weights from 'nowhere.safetensors'"),
    (["--backend", "onnx", "--weights", "w.safetensors", "--init", "xavier_normal",
      "-o", "x.onnx"], "with --weights nothing is"),
    (["--backend", "onnx", "--init", "glorot", "-o", "x.onnx"], "unknown weight initialisation"),
    (["--backend", "onnx", "-o", "nowhere/x.onnx"], "the folder 'nowhere' does not exist"),
])
def test_cli_option_errors_exit_2(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    W.save("w.safetensors", {"x": np.zeros(1, np.float32)})
    code, err = _cli(capsys, "build", "sqnxt", *argv)
    assert code == 2 and needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


# ---- the resampling ops with random arguments (tests/test_fuzz.py's generator) ---------------
@pytest.mark.parametrize("op", ["upsample", "conv_transpose", "pixel_shuffle",
                                "pixel_unshuffle", "channel_shuffle", "adaptive_avgpool",
                                "adaptive_maxpool", "drop_path", "crop"])
def test_resample_ops_random_arguments_agree_with_torch_in_onnxruntime(op):
    """Every draw of test_fuzz's generator that compiles (sizes 1 to 12, scales, bins,
    strides, paddings, groups, align_corners ...) passes the checker and gives the torch
    module's output in onnxruntime."""
    import random

    from test_fuzz import _resample_source
    rng = random.Random(f"archc-onnx-{op}")
    compiled = 0
    for _ in range(40):
        src = _resample_source(op, rng)
        try:
            net = archc.load_source(src)
        except ArchError:
            continue        # test_fuzz checks these errors
        compiled += 1
        torch.manual_seed(0)
        module = torch_backend.compile_module(net).eval()
        model = onnx_backend.build_model(net, weights=W.state_dict_numpy(module))
        onnx.checker.check_model(model, full_check=True)
        x = np.random.RandomState(compiled).randn(2, *net.input_shape).astype(np.float32)
        want = _torch(module, x)
        got = _run(model, net, x)
        assert got.shape == want.shape, src
        assert np.abs(got - want).max() <= TOL * max(float(np.abs(want).max()), 1e-6), src
    assert compiled >= 5, compiled
