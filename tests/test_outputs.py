"""Networks with several named outputs (issue 13): `return outputs(name=tensor, ...)` in the
language, the IR's output list, the analysis of every output, the generated modules'
dicts (torch and JAX agree on every output with the same weights), and training on the
first output."""
from __future__ import annotations

import json

import numpy as np
import pytest

import archc
from archc.compiler import ArchError

TWO_HEADS = """
network TwoHeads(classes: int = 10) {
    x = input(3, 16, 16)
    y = x -> c1: conv(8, kernel=3, padding=1) -> b1: bn -> relu
    seg = y -> c2: conv(4, kernel=1) -> up: upsample(2, mode="bilinear")
    logits = y -> c3: conv(16, kernel=3, stride=2) -> relu -> global_avgpool -> flatten
               -> fc: linear(classes)
    return outputs(logits=logits, seg=seg, feat=y)
}
"""


def test_outputs_are_named_in_order_and_the_first_is_the_output():
    net = archc.load_source(TWO_HEADS)
    assert net.outputs == (("logits", "fc"), ("seg", "up"), ("feat", "relu_1"))
    assert net.output == "fc" and net.output_shape == (10, 1, 1)
    assert net.output_list() == list(net.outputs)
    plain = archc.load("sqnxt", stages=[1, 1, 1, 1])
    assert plain.outputs == () and plain.output_list() == [(None, "fc")]


def test_analysis_reports_every_output_with_what_it_needs():
    a = archc.analyze(archc.load_source(TWO_HEADS))
    by = {o.name: o for o in a.outputs}
    assert [o.name for o in a.outputs] == ["logits", "seg", "feat"]
    p = {lc.name: lc.params for lc in a.layers}
    m = {lc.name: lc.macs for lc in a.layers}
    assert by["feat"].params == p["c1"] + p["b1"] and by["feat"].macs == m["c1"]
    assert by["seg"].params == p["c1"] + p["b1"] + p["c2"]
    assert by["logits"].macs == m["c1"] + m["c3"] + m["fc"]
    assert by["seg"].shape == (4, 32, 32)
    d = archc.to_json_dict(a)
    assert d["outputs"][1] == {"name": "seg", "layer": "up", "output": [32, 32, 4],
                               "params": by["seg"].params, "macs": by["seg"].macs}
    json.dumps(d)
    text = archc.render(a)
    assert f"output seg 32x32x4 from up: needs {by['seg'].params:,} params" in text


def test_every_output_stays_alive_to_the_end():
    """The peak counts an output made early (here the 8x16x16 `early`) as alive until the
    network ends, as the caller holds it (docs/costs.md)."""
    src = """
network N() {
    x = input(3, 16, 16)
    early = x -> c1: conv(8, kernel=1)
    late = early -> c2: conv(16, kernel=1) -> c3: conv(16, kernel=1)
    return RET
}
"""
    one = archc.analyze(archc.load_source(src.replace("RET", "late"))).totals
    two = archc.analyze(archc.load_source(src.replace("RET", "outputs(a=late, b=early)"))).totals
    # during c3: its input and output, 16x16x16 each; `early` died after c2 ...
    assert (one["peak_activations"], one["peak_activations_at"]) == (2 * 16 * 16 * 16, "c3")
    # ... unless it is an output
    assert (two["peak_activations"], two["peak_activations_at"]) == \
        (2 * 16 * 16 * 16 + 8 * 16 * 16, "c3")


@pytest.mark.parametrize("body, where, message", [
    ("return outputs(x)", "t.arch:3:20", "outputs() takes the outputs as name=tensor"),
    ("return outputs()", "t.arch:3:12", "outputs() needs at least one name=tensor"),
    ("return outputs(a=x, b=3)", "t.arch:3:25", "outputs(): an output must be a tensor, got int 3"),
    ("return o: outputs(a=x)", "t.arch:3:12",
     "outputs(...) names a network's outputs; it cannot be labelled"),
    ("return [x, x]", "t.arch:1:1",
     "network 'N' must return a tensor or outputs(name=tensor, ...), not list"),
])
def test_outputs_errors(body, where, message):
    with pytest.raises(ArchError) as err:
        archc.load_source(f"network N() {{\n    x = input(3, 8, 8)\n    {body}\n}}\n",
                          filename="t.arch")
    assert err.value.format().startswith(f"{where}: error: {message}"), err.value.format()


def test_outputs_only_in_a_network_body():
    src = ("block b(x: tensor) {\n    return outputs(y=x)\n}\n"
           "network N() {\n    x = input(3, 8, 8)\n    return b(x)\n}\n")
    with pytest.raises(ArchError) as err:
        archc.load_source(src, filename="t.arch")
    assert err.value.format().startswith(
        "t.arch:2:12: error: outputs(...) may only appear in a network body")


@pytest.mark.slow   # full-network JAX compiles
def test_modules_return_dicts_and_agree():
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    from flax import nnx

    from archc.backends import jax_backend as jb
    from archc.backends import torch_backend as tb
    from archc.backends import weights as W
    net = archc.load_source(TWO_HEADS)
    src = tb.build_source(net)
    assert "return OrderedDict([('logits', " in src
    assert "Outputs, an OrderedDict: logits N x 10" in src
    torch.manual_seed(0)
    tm = tb.compile_module(net).eval()
    jm = jb.compile_module(net)
    W.load_into_jax(jm, net, W.state_dict_numpy(tm))
    jm.eval()
    x = np.random.RandomState(0).randn(2, 3, 16, 16).astype(np.float32)
    with torch.no_grad():
        yt = tm(torch.from_numpy(x))
    yj = nnx.jit(lambda m, v: m(v))(jm, jax.numpy.asarray(x.transpose(0, 2, 3, 1)))
    assert list(yt) == list(yj) == ["logits", "seg", "feat"]
    assert yt["logits"].shape == (2, 10) and yj["logits"].shape == (2, 10)  # flat: reshaped
    for k in yt:
        t = yt[k].numpy()
        t = t.transpose(0, 2, 3, 1) if t.ndim == 4 else t
        np.testing.assert_allclose(np.asarray(yj[k]), t, rtol=0, atol=1e-5, err_msg=k)


@pytest.mark.slow   # a training run
def test_torch_training_uses_the_first_output(tmp_path):
    """`archc train`'s loops train on the first output (docs/training.md): a network whose
    other outputs are maps trains and evaluates on its logits."""
    pytest.importorskip("torch")
    from archc.training import first_output, torch_loop
    from archc.training.data import ImageData
    net = archc.load_source(TWO_HEADS.replace("input(3, 16, 16)", "input(3, 32, 32)"))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    y = np.arange(40) % 10
    data = ImageData(x, y, x[:20], y[:20], tuple("0123456789"), "synthetic")
    s = torch_loop.train(net, data, archc.Recipe(epochs=1, batch_size=20), str(tmp_path / "r"),
                         progress=False, log=lambda *a: None)
    assert s["epochs"] == 1 and 0 <= s["last_test_acc"] <= 100
    assert first_output({"a": 1, "b": 2}) == 1 and first_output(3) == 3
