"""The generated network class takes the network's parameters as constructor arguments: one
file is the model family. For every bundled network and both backends, constructing the
class of the file `archc build NAME` writes with other argument values gives exactly the
module `archc build NAME -D name=value` gives (the same parameter names, shapes and order;
with the same weights, the same outputs). The values tried here are not the ones the build
verifies with (backends/_family.py's `alternatives`)."""
from __future__ import annotations

import ast

import pytest
from archc.compiler import ArchError, bundled_networks, load

import archc
from archc.backends import _family

torch = pytest.importorskip("torch")
NETWORKS = bundled_networks()
# forward() too, for small networks (every argument alone and all together)
OUTPUT_CHECK = ["se_sqnxt", "shallow_sqnxt", "squeezenet", "mobilenet_v3"]


def _exec(src: str, name: str) -> dict:
    ns: dict = {"__name__": f"generated_{name}"}
    exec(compile(src, f"{name}.py", "exec"), ns)  # noqa: S102 - archc's own generated text
    return ns


def _arguments(src: str, cls: str) -> list:
    """The network class's constructor arguments, in order."""
    tree = ast.parse(src)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    init = next(f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    return [a.arg for a in init.args.args[1:]]


def _test_values(v) -> list:
    """Other values to try, unlike the build's own verification values."""
    if isinstance(v, bool):
        return [not v]
    if isinstance(v, int):
        return [v + 2, v + 5, 3 * v + 2]
    if isinstance(v, float):
        return [round(v * 0.3 + 0.05, 4), round(v * 0.6, 4)]
    if isinstance(v, tuple) and all(type(x) is int for x in v):
        return [list(reversed(v)), [x + 3 for x in v]]
    return []


def _settings(name: str, args: list) -> list:
    """One setting per argument (its first value the network accepts) and one of all of them."""
    net = load(name)
    out, joint = [], {}
    for a in args:
        for value in _test_values(net.params[a]):
            try:
                load(name, **{a: value})
            except ArchError:
                continue
            out.append({a: value})
            joint[a] = value
            break
        else:
            pytest.fail(f"{name}: no test value of {a} is valid")
    try:
        load(name, **joint)
        out.append(joint)
    except ArchError:
        pass
    return out


@pytest.mark.parametrize("name", NETWORKS)
def test_torch_class_with_arguments_is_the_module_archc_builds(name):
    src = archc.build_source(name)
    net = load(name)
    cls = _class_name(src)
    args = _arguments(src, cls)
    assert args == [p for p in net.params if p in args], "arguments in the .arch order"
    gen = _exec(src, name)[cls]
    settings = _settings(name, args)
    # every argument alone for the small networks, all of them together for every network
    for setting in settings if name in OUTPUT_CHECK else settings[-1:]:
        torch.manual_seed(0)
        mine = gen(**setting)
        ref = archc.build_module(name, **setting)
        a, b = mine.state_dict(), ref.state_dict()
        assert [(k, tuple(v.shape)) for k, v in a.items()] == \
            [(k, tuple(v.shape)) for k, v in b.items()], (name, setting)


@pytest.mark.parametrize("name", OUTPUT_CHECK)
def test_torch_outputs_equal_with_the_same_weights(name):
    src = archc.build_source(name)
    cls = _class_name(src)
    gen = _exec(src, name)[cls]
    setting = _settings(name, _arguments(src, cls))[-1]
    mine = gen(**setting).eval()
    ref = archc.build_module(name, **setting).eval()
    ref.load_state_dict(mine.state_dict())
    c, h, w = load(name, **setting).input_shape
    x = torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = mine(x), ref(x)
    if isinstance(got, dict):
        got, want = list(got.values()), list(want.values())
    else:
        got, want = [got], [want]
    for g, r in zip(got, want):
        assert g.shape == r.shape
        assert torch.equal(g, r), name


@pytest.mark.parametrize("name", NETWORKS)
def test_jax_class_with_arguments_is_the_module_archc_builds(name):
    nnx = pytest.importorskip("flax.nnx")
    import jax
    src = archc.build_source(name, backend="jax")
    cls = _class_name(src)
    args = _arguments(src, cls)
    assert args == _arguments(archc.build_source(name), _class_name(src)), \
        "both backends take the same arguments"
    gen = _exec(src, name)[cls]

    def shapes(make):
        state = nnx.state(nnx.eval_shape(make))
        return [(tuple(map(str, k)), tuple(v.shape))
                for k, v in jax.tree_util.tree_flatten_with_path(state)[0]]
    setting = _settings(name, args)[-1]
    other = _exec(archc.build_source(name, backend="jax", **setting), name)[cls]
    assert shapes(lambda: gen(**setting, rngs=nnx.Rngs(0))) == \
        shapes(lambda: other(rngs=nnx.Rngs(0))), (name, setting)


def _class_name(src: str) -> str:
    return [n.name for n in ast.parse(src).body if isinstance(n, ast.ClassDef)][-1]


def test_se_sqnxt_takes_its_scalar_parameters_and_states_what_is_fixed():
    src = archc.build_source("se_sqnxt")
    assert _arguments(src, "SESqueezeNext") == ["stages", "width", "dropout", "classes",
                                                "se_ratio"]
    assert "def __init__(self, stages=(1, 2, 4, 1), width=1.0, dropout=0.6, classes=10, " \
        "se_ratio=16.0):" in src
    doc = ast.get_docstring(next(n for n in ast.parse(src).body
                                 if isinstance(n, ast.ClassDef) and n.name == "SESqueezeNext"))
    flat = " ".join(doc.split())
    assert "their defaults are the values this file was built with): stages = [1, 2, 4, 1], " \
        "width = 1.0, dropout = 0.6, classes = 10, se_ratio = 16.0." in flat
    assert "Fixed in this file (`archc build -D NAME=VALUE` changes them): " \
        "resolution = 32, init = \"xavier_uniform\"." in flat
    # the defaults are the values the file was built with
    assert "stages=(1, 2, 8, 1), width=0.5, dropout=0.6, classes=100, se_ratio=16.0" in \
        archc.build_source("se_sqnxt", width=0.5, classes=100, stages=[1, 2, 8, 1])
    cls = _exec(src, "se_sqnxt")["SESqueezeNext"]
    model = cls(stages=[1, 2, 8, 1], width=0.5, classes=100)
    assert model.fc.out_features == 100 and model.conv1.out_channels == 32
    assert len(model.stage3) == 8 and model.stage3.block8.conv5.conv.out_channels == 64
    # the network's assertion is the constructor's check, with its message
    with pytest.raises(ValueError, match="stages lists the blocks of the 4 stages"):
        cls(stages=[1, 2, 8])


def test_a_parameter_whose_code_changes_stays_fixed():
    """Only verified parameters become arguments: a parameter is dropped when the file built
    with another value of it is other code (ResNet's depth picks the block and its stage
    lengths); SE-SqueezeNext's stage lists are the bounds of its stage loops."""
    from archc.backends import torch_backend
    assert "depth" not in _family.exposed(torch_backend.BACKEND, load("resnet"))
    assert _family.exposed(torch_backend.BACKEND, load("se_sqnxt")) == \
        ("stages", "width", "dropout", "classes", "se_ratio", "resolution")


def test_a_value_forward_reads_is_computed_by_the_constructor():
    """FCN's upsampling size is its `resolution`: __init__ stores it, forward() reads it."""
    src = archc.build_source("fcn")
    assert _arguments(src, "FCN") == ["classes", "resolution"]
    init, fwd = src.split("class FCN")[-1].split("def forward")
    stored = [ln.split("=", 1)[0].strip() for ln in init.splitlines()
              if ln.strip().startswith("self.") and "resolution" in ln.split("=", 1)[1]]
    assert stored and all(name in fwd for name in stored)
    model = _exec(src, "fcn")["FCN"](classes=3, resolution=64).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert tuple(out["out"].shape) == (1, 3, 64, 64)


def test_alternatives_are_other_values_of_the_same_kind():
    assert _family.alternatives(True) == [False]
    assert _family.alternatives(10) == [11, 23]
    assert _family.alternatives(1.0) == [0.5, 0.75]
    assert _family.alternatives((1, 2)) == [[2, 3], [3, 4]]
    assert _family.alternatives("relu") == []
    assert all(isinstance(v, float) for v in _family.alternatives(0.0))


def test_a_deployed_network_takes_no_arguments():
    """archc.deploy's transform is not a program the file could run again."""
    from archc.backends import torch_backend
    net = archc.deploy(load("repvgg"))
    assert _family.exposed(torch_backend.BACKEND, net) == ()
    src = archc.build_source(net)
    assert "def __init__(self):" in src.split("class RepVGG")[-1]


def test_the_verification_is_bounded(monkeypatch):
    """A network recording more trace events than the verification may walk, or whose
    rebuilds would walk more in all, keeps its parameters fixed instead of building for
    long (a hostile loop: analysis takes seconds, each verification build as long again)."""
    from archc.backends import torch_backend
    net = load("se_sqnxt")
    monkeypatch.setattr(_family, "_CACHE", {})
    monkeypatch.setattr(_family, "BASE_EVENTS", _family._events(net) - 1)
    assert _family.exposed(torch_backend.BACKEND, net) == ()
    monkeypatch.setattr(_family, "_CACHE", {})
    monkeypatch.setattr(_family, "BASE_EVENTS", 20_000)
    monkeypatch.setattr(_family, "BUDGET_EVENTS", 2 * _family._events(net))  # base + one
    assert _family.exposed(torch_backend.BACKEND, net) == ()
    monkeypatch.setattr(_family, "_CACHE", {})
    monkeypatch.setattr(_family, "BUDGET_EVENTS", 200_000)
    assert "stages" in _family.exposed(torch_backend.BACKEND, net)
    src = archc.build_source(load("se_sqnxt"))
    assert "def __init__(self, stages=" in src


@pytest.mark.parametrize("name", ["se_sqnxt", "densenet", "mnasnet", "convnext"])
def test_the_module_archc_instantiates_is_the_files_class_with_its_defaults(name):
    """archc.build_module / train build the network without the family's verification (its
    class then takes no arguments): the same members in the same order, with the same
    initial values as the file `archc build` writes, constructed at its defaults."""
    nnx = pytest.importorskip("flax.nnx")
    import jax
    import numpy as np
    src = archc.build_source(name)
    torch.manual_seed(0)
    mine = _exec(src, name)[_class_name(src)]().state_dict()
    torch.manual_seed(0)
    ref = archc.build_module(name).state_dict()
    assert list(mine) == list(ref) and all(torch.equal(mine[k], ref[k]) for k in mine)
    src = archc.build_source(name, backend="jax")
    mine = nnx.state(_exec(src, name)[_class_name(src)](rngs=nnx.Rngs(params=0, dropout=1)),
                     nnx.Param)
    ref = nnx.state(archc.build_module(name, backend="jax"), nnx.Param)
    a, b = (jax.tree_util.tree_flatten_with_path(s)[0] for s in (mine, ref))
    assert [k for k, _ in a] == [k for k, _ in b]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a, b))
