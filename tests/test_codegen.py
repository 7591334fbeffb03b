"""The backend base and the code it generates (issue 11): one lowering per op in every
backend, block classes, names that mean the same to Python, generated files that pass a
linter, and constructor code that computes exactly what the .arch file computed."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import archc
from archc.backends import _names, _pyexpr, _wrap, jax_backend, onnx_backend, torch_backend
from archc.compiler import ArchError, bundled_networks, library_dir, load, ops

BACKENDS = [torch_backend.BACKEND, jax_backend.BACKEND, onnx_backend.BACKEND]
ARCHS = sorted(p.stem for p in Path(library_dir()).glob("*.arch"))


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("op", sorted(set(ops.REGISTRY) - {"input"}))
def test_every_registry_op_lowers_in_every_backend(backend, op):
    assert op in backend.lower, f"the {backend.name} backend has no lowering for '{op}'"


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_backend_weight_tables_cover_every_stateful_op(backend):
    """Every tensor an op with state declares (params, buffers) has a name in every backend."""
    net = load("se_sqnxt")
    for name in net.layers():
        d = net.node(name)
        op = ops.get(d["op"])
        if op.stateful and (op.params(d["in_shapes"], d["shape"], d["attrs"]) or
                            op.buffers(d["in_shapes"], d["shape"], d["attrs"])):
            tensors = set(op.params(d["in_shapes"], d["shape"], d["attrs"])) | \
                set(op.buffers(d["in_shapes"], d["shape"], d["attrs"]))
            assert tensors <= set(backend.weights[d["op"]]), (d["op"], backend.name)


def test_a_missing_lowering_is_a_positioned_error(monkeypatch):
    net = load("se_sqnxt")
    monkeypatch.delitem(jax_backend.LOWER, "mul")
    with pytest.raises(ArchError, match="the jax backend cannot lower op 'mul'") as e:
        jax_backend.build_source(net)
    assert e.value.span is not None and e.value.hint


# ---- the shape of the generated code ------------------------------------------------------
def _sources():
    out = []
    for name in ARCHS:
        net = load(name)
        out += [(name, "torch", torch_backend.build_source(net)),
                (name, "jax", jax_backend.build_source(net))]
    return out


@pytest.fixture(scope="module")
def sources():
    return _sources()


@pytest.mark.slow   # every network, both backends
def test_generated_files_pass_the_linter(sources, tmp_path):
    """ruff (pyflakes + pycodestyle, 99 columns) finds nothing in any generated file."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    for name, backend, src in sources:
        (tmp_path / f"{name}_{backend}.py").write_text(src)
    proc = subprocess.run([ruff, "check", "--no-cache", "--isolated", "--select", "E,F,W",
                           "--line-length", "99", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_one_class_per_block_structure(sources):
    src = dict(((n, b), s) for n, b, s in sources)[("se_sqnxt", "torch")]
    tree = ast.parse(src)
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert classes == ["ConvBn", "Se", "SqnxtBlock", "SESqueezeNext"]
    block = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SqnxtBlock")
    init = next(f for f in block.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    assert [a.arg for a in init.args.args + init.args.kwonlyargs] == \
        ["self", "in_channels", "out", "stride", "se_ratio"]
    # the class always builds the SE member: se_ratio has no default (the .arch default 0.0
    # selects the body without it, and would divide by zero in Se)
    assert [a.arg for a in init.args.kwonlyargs] == ["se_ratio"]
    assert init.args.kw_defaults == [None]
    # the stages stay sequences whose entries keep the IR's names, built by the stage loops
    # from the network class's arguments (stages, width, se_ratio)
    assert 'stage[f"block{b + 1}"] = SqnxtBlock(' in src
    assert 'setattr(self, f"stage{s + 1}", nn.Sequential(stage))' in src
    assert "for b in range(stages[s]):" in src


def test_structures_of_one_block_are_variants_or_optional_members():
    """stride/channel changes add the projection shortcut: one class with an optional member;
    ResNet-50's bottleneck blocks likewise (torchvision's `downsample`)."""
    src = torch_backend.build_source(load("resnet", depth=50))
    assert "class ResnetBlock(nn.Module):" in src
    # one optional layer: one conditional assignment, None when the condition fails
    assert ("        self.downsample = (ConvBn(in_channels, out, stride=stride)\n"
            "                           if stride != 1 or in_channels != out else None)\n") in src
    assert "x if self.downsample is None else self.downsample(x)" in src


def test_norm_helpers_keep_their_affine_option_only_where_a_call_passes_it():
    """A JAX norm helper has no option that its file never uses: where no call passes
    `affine=`, it always has a learned scale and bias; a call with affine=false keeps the
    option in that helper only. (tests/test_op_registry.py runs both against torch.)"""
    def helper(src, name):
        start = src.index(f"class {name}(")
        return src[start:src.index("\n\n\n", start)]
    plain = helper(archc.build_source("se_sqnxt", backend="jax"), "BatchNorm")
    assert "affine" not in plain and "self.scale = nnx.Param(" in plain
    assert "return y * self.scale[...].astype(x.dtype) + self.bias[...].astype(x.dtype)" in plain
    net = archc.load_source("network T() {\n    x = input(4, 8, 8)\n"
                            "    y = concat(x -> group_norm(2), x -> layer_norm(affine=false))\n"
                            "    return y\n}\n")
    src = archc.build_source(net, backend="jax")
    assert "LayerNorm(4, affine=False)" in src
    assert "def __init__(self, num_features, *, eps=1e-5, affine=True):" in helper(src, "LayerNorm")
    assert "affine" not in helper(src, "GroupNorm")
    assert "self.scale = nnx.Param(" in helper(src, "GroupNorm")


def test_constructor_code_keeps_the_arch_names_and_arithmetic(sources):
    src = dict(((n, b), s) for n, b, s in sources)[("se_sqnxt", "torch")]
    assert "r = 1.0 if stride == 2 else 0.25 if in_channels > out else 0.5" in src
    assert "c1 = int(in_channels * r)" in src
    assert "hidden = max(int(in_channels / ratio), 1)" in src


# ---- names that Python treats differently (issue 12, class 4) -----------------------------
CLASH = """
block blk(x: tensor, lambda: int = 2, __class__: int = 3) {
    y = x -> _modules: conv(lambda * __class__, kernel=1) -> _parameters: bn
    return y -> __dict__: conv(x.channels, kernel=1) -> "\ufb01lter": bn -> filter: relu
}
network N() {
    x = input(3, 8, 8)
    x = x -> eval: conv(4, kernel=1) -> self: bn -> super: relu
    x = training: blk(x, lambda=1)
    x = T_destination: blk(x)
    return x -> pool: global_avgpool -> flatten: flatten -> state_dict: linear(2)
}
"""


@pytest.mark.slow   # a full-network compile
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_names_python_treats_differently_round_trip(backend):
    """Labels that are keywords, nn.Module/nnx.Module attributes, dunder or private names, or
    distinct only before NFKC normalisation (ﬁ vs fi) give a module that builds, holds every
    layer at a distinct path, and computes every layer (tap mode sees each IR layer)."""
    net = archc.load_source(CLASH)
    be = {"torch": torch_backend, "jax": jax_backend}[backend]
    tree = be.module_tree(net)
    stateful = [n for n in net.layers() if ops.get(net.node(n)["op"]).stateful]
    paths = [tree.path(n) for n in stateful]
    assert len(set(paths)) == len(paths)
    for p in paths:
        for part in p.split("."):
            assert part.isidentifier() and not part.startswith("__")
            assert part not in be.BACKEND.reserved_attrs
    seen = []
    module = be.compile_module(net, tap=lambda name, v: seen.append(name) or v)
    if backend == "torch":
        import torch
        out = module(torch.randn(2, 3, 8, 8))
        assert {f"{p}.weight" for p, n in zip(paths, stateful)
                if net.node(n)["op"] in ("conv", "linear")} <= set(module.state_dict())
    else:
        import jax.numpy as jnp
        out = module(jnp.ones((2, 8, 8, 3)))
        for p in paths:   # every layer sits at its path
            m = module
            for part in p.split("."):
                m = getattr(m, part)
            assert m is not None
    assert tuple(out.shape) == (2, 2)
    assert seen == net.layers()


def test_identifiers_are_python_identifiers_meaning_one_thing():
    assert _names.identifier("class") == "class_"
    assert _names.identifier("\ufb01lter") == "filter"            # NFKC, as Python reads it
    assert _names.identifier("__class__") == "m__class__"          # never mangled by Python
    assert _names.identifier("filter", {"filter"}) == "filter_"


# ---- constructor code means what the .arch expression meant --------------------------------
@pytest.mark.parametrize("text, env, value", [
    ("1.0 if stride == 2 else 0.5", {"stride": 2}, 1.0),
    ("int(c / r) // 2 ** 2", {"c": 100, "r": 3.0}, 8),
    ("max(int(c * 0.25), 8)", {"c": 7}, 8),
    ("(a, 3)[0] + len((1, 2))", {"a": 4}, 6),
    ("not a and b or c", {"a": False, "b": True, "c": False}, True),
    ("math.ceil(x / 2)", {"x": 5}, 3),
    ("make_divisible(c / 4, 8)", {"c": 100}, 24),
])
def test_python_value_of_translations(text, env, value):
    assert _pyexpr.same_value(value, _pyexpr.python_value(text, env))


@pytest.mark.parametrize("text", ["__import__('os')", "open('x')", "x.__class__", "[1][0]",
                                  "2 ** 1000", "(1,) * 10**9", "f(1)", "lambda: 1"])
def test_python_value_refuses_anything_else(text):
    with pytest.raises(ValueError):
        _pyexpr.python_value(text, {"x": 1, "f": print})


def test_a_translation_python_reads_differently_falls_back_to_the_value():
    """archc's `flag == 1` is false for a bool; Python's True == 1 is true: not translated."""
    src = """
    block b(x: tensor, flag: bool = true) {
        k = if flag == 1 then 5 else 3
        return c: conv(x, k, kernel=1)
    }
    network N() {
        x = input(3, 4, 4)
        return x -> b1: b(flag=true) -> b2: b(flag=false)
    }"""
    net = archc.load_source(src)
    module = torch_backend.compile_module(net)
    assert module.b1.c.out_channels == 3 and module.b2.c.out_channels == 3
    assert sum(p.numel() for p in module.parameters()) == archc.analyze(net).totals["params"]


def test_reassigned_variables_keep_their_values():
    """A variable assigned again (each loop iteration's `c`) is a new Python name: layers
    built before the reassignment keep the old value."""
    src = torch_backend.build_source(load("xception"))
    assert "c_2 = " in src
    net = load("xception")
    module = torch_backend.compile_module(net)
    assert sum(p.numel() for p in module.parameters()) == archc.analyze(net).totals["params"]


def test_every_bundled_network_is_listed():
    assert ARCHS == bundled_networks()


def test_lowering_wraps_long_calls():
    lines = _wrap.wrap("x = ", "f(" + ", ".join(f"a{i}" for i in range(40)) + ")", "")
    assert all(len(line) <= 99 for line in lines) and len(lines) > 1
    ast.parse("\n".join(lines))   # still one valid statement


def test_channel_rule_agrees_with_the_shape_rule_for_every_op():
    """ops.Op.channels (the symbolic channel rule generated classes use) gives the channel
    count of ops.Op.shape for every layer of a network using every op, and of the library."""
    from test_torch_backend import ALL_OPS
    nets = [archc.load_source(ALL_OPS)] + [load(n) for n in ("googlenet", "mobilenet_v3")]
    assert {nets[0].node(x)["op"] for x in nets[0].graph.nodes} == set(ops.REGISTRY)
    for net in nets:
        for name in net.graph.nodes:
            d = net.node(name)
            got = ops.get(d["op"]).channels([s[0] for s in d["in_shapes"]], d["attrs"])
            assert got in (None, d["shape"][0]), (name, got, d["shape"])


def test_checked_in_jax_example_is_current():
    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "se_sqnxt_jax.py"
    assert example.read_text() == archc.build_source("se_sqnxt", backend="jax")


def test_se_sqnxt_pooled_features_reach_the_linear_layer_without_a_4d_round_trip():
    """The JAX file keeps N x C values where torch's does: the global pool before flatten is
    jnp.mean without the 1 x 1 axes, so neither a flatten helper nor a reshape is left
    around the final linear layer; the files stay short."""
    src = archc.build_source("se_sqnxt", backend="jax")
    call = src[src.rindex("def __call__"):]
    assert "flatten(" not in src and ".reshape(" not in call
    assert call.rstrip().endswith("x = jnp.mean(self.dropout(x), axis=(1, 2))\n"
                                  "        return self.fc(x)")
    # issue's targets: at most 200 (JAX) and 150 (torch) lines (docs/backends.md, "Size of
    # the generated files")
    assert len(src.splitlines()) <= 200
    assert len(archc.build_source("se_sqnxt", backend="torch").splitlines()) <= 150


def test_make_divisible_helper_is_archcs_rule():
    """The helper written into generated files computes archc's make_divisible builtin."""
    from archc.compiler._builtins import BUILTINS
    ns: dict = {}
    exec(compile(_pyexpr.MAKE_DIVISIBLE, "<helper>", "exec"), ns)  # noqa: S102 - our own text
    for v in (1, 7.5, 16, 30.1, 96 / 4, 100, 3.999, 1e3 / 3):
        for d in (1, 4, 8, 16):
            assert ns["make_divisible"](v, d) == BUILTINS["make_divisible"](v, d), (v, d)


def test_a_default_that_is_an_expression_is_written_in_the_callers_terms():
    """`mid: int = out` not given by a call: the caller passes its own text for `out` instead
    of each call's literal, so U-Net's four down blocks are one class (7 classes in all)."""
    src = torch_backend.build_source(load("unet"))
    tree = ast.parse(src)
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert [c for c in classes if c.startswith("UnetDown")] == ["UnetDown"]
    assert "self.conv = UnetDoubleConv(in_channels, out, out, padded=padded)" in src
    # and the up blocks one class: the crop's window is computed from its input's runtime
    # size (its size the caller passes), not written as literal slices per call
    for backend in ("torch", "jax"):
        src = archc.build_source("unet", backend=backend)
        classes = [n.name for n in ast.parse(src).body if isinstance(n, ast.ClassDef)]
        assert [c for c in classes if c.startswith("UnetUp")] == ["UnetUp"], backend
        assert "s = center_crop(skip, self.crop_size)" in src
        assert "self.up4 = UnetUp(128, 64, 64, crop_size=(392, 392)" in src


def test_a_block_loop_is_a_loop_in_init_and_forward():
    """DenseNet's dense block (`for i in range(layers)`: a layer, then a concat) is one class
    whose loops make and call `denselayer<i + 1>` (the state_dict keys stay the IR's names),
    whatever the layer count: torchvision's _DenseBlock(num_layers); ConvNeXt's first stage."""
    for backend in ("torch", "jax"):
        src = archc.build_source("densenet", backend=backend)
        tree = ast.parse(src)
        classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
        assert [c for c in classes if c.startswith("DenseBlock")] == ["DenseBlock"], backend
        assert 'setattr(self, f"denselayer{i + 1}", DenseLayer(x_channels, growth' in src
        assert "for i in range(self.layers):" in src
        assert 'y = getattr(self, f"denselayer{i + 1}")(x)' in src
        assert "self.denseblock3 = DenseBlock(256, 24, 32" in src
    net = load("densenet")
    model = torch_backend.compile_module(net)
    assert sorted(k for k in model.state_dict() if k.startswith("denseblock1.denselayer6.conv2"))\
        == ["denseblock1.denselayer6.conv2.weight"]


def test_a_block_loop_after_fixed_steps_is_a_loop():
    """ConvNeXt's stage (`if down { downsampling norm and conv }`, then `for b in
    range(depth)`) is one class, as timm's ConvNeXtStage: the optional pair of members under
    `if down`, then the loop written as loops from where they leave it (its count an
    argument); state_dict keys stay the IR's names, and the file's module is archc's, with
    the same outputs for the same weights."""
    for backend in ("torch", "jax"):
        src = archc.build_source("convnext", backend=backend)
        tree = ast.parse(src)
        stages = [n.name for n in tree.body if isinstance(n, ast.ClassDef)
                  and n.name.startswith("ConvnextStage")]
        assert stages == ["ConvnextStage"], backend
        stage = next(n for n in tree.body if isinstance(n, ast.ClassDef) and
                     n.name == "ConvnextStage")
        init = next(f for f in stage.body if isinstance(f, ast.FunctionDef) and
                    f.name == "__init__")
        assert [a.arg for a in init.args.args] == \
            ["self", "in_channels", "out", "depth", "down", "ls_init"], backend
        assert "        if down:\n            self.downsample_norm = " in src
        assert "        x_channels = out if down else in_channels\n" \
            "        for b in range(depth):\n" \
            '            setattr(self, f"block{b}", ConvnextBlock(x_channels' in src
        assert "        if self.downsample_norm is not None:\n" in src
        assert "        for b in range(self.depth):\n" \
            '            x = getattr(self, f"block{b}")(x)\n' \
            "        return x\n" in src
        assert "self.block0 =" not in src
        for s, (cin, out, depth, down) in enumerate(
                [(40, 40, 2, False), (40, 80, 2, True), (80, 160, 6, True),
                 (160, 320, 2, True)]):
            assert f"self.stage{s} = ConvnextStage({cin}, {out}, {depth}, {down}, ls_init" \
                in src, (backend, s)
    torch = pytest.importorskip("torch")
    ns: dict = {}
    exec(compile(archc.build_source("convnext"), "convnext.py", "exec"), ns)  # noqa: S102
    torch.manual_seed(0)
    mine = ns["ConvNeXt"]().eval()
    torch.manual_seed(0)
    ref = archc.build_module("convnext").eval()
    a, b = mine.state_dict(), ref.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert "stage1.downsample_norm.weight" in a and "stage2.block5.gamma.gamma" in a
    assert not any(k.startswith("stage0.downsample") for k in a)
    # tap mode writes every block's loop unrolled: the same keys, the same outputs
    unrolled = torch_backend.compile_module(load("convnext"), tap=lambda name, v: v).eval()
    unrolled.load_state_dict(a)
    assert list(unrolled.state_dict()) == list(a)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(mine(x), ref(x))
        assert torch.allclose(mine(x), unrolled(x), rtol=1e-5, atol=1e-6)
    # the class with other arguments: down without it, the loop's count
    plain = ns["ConvnextStage"](8, 8, 3, False, 1e-6)
    assert plain.downsample_norm is None and plain.depth == 3
    assert plain(torch.randn(1, 8, 4, 4)).shape == (1, 8, 4, 4)
    assert ns["ConvnextStage"](8, 16, 1, True, 1e-6)(torch.randn(1, 8, 4, 4)).shape == \
        (1, 16, 2, 2)


LOOP_AFTER_STEPS = """
block blk(x: tensor) {
    return x -> conv: conv(x.channels, kernel=3, padding=1) -> act: relu
}
block stage(x: tensor, width: int, depth: int) {
    y = x -> pre: conv(width, kernel=1)
    for b in range(depth) {
        y = "b{b}": blk(y)
    }
    return y
}
block tail(x: tensor, depth: int) {
    y = x -> pre: conv(8, kernel=1)
    for b in range(depth) {
        y = "b{b}": blk(y)
    }
    return add(x, y)
}
network N() {
    x = input(3, 8, 8)
    x = "s0": stage(x, 8, 2)
    x = "s1": stage(x, 8, 3)
    x = "t0": tail(x, 2)
    return x
}
"""


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_block_loop_after_steps_rolls_only_where_it_is_the_rest_of_the_data_flow(backend):
    """A loop after a step of the block is written as loops from the step's output (the
    carried variable keeps its .arch name); one followed by other steps stays unrolled."""
    mod = torch_backend if backend == "torch" else jax_backend
    src = mod.build_source(archc.load_source(LOOP_AFTER_STEPS))
    classes = [n.name for n in ast.parse(src).body if isinstance(n, ast.ClassDef)]
    assert classes == ["Blk", "Stage", "Tail", "N"]
    stage = src[src.index("class Stage("):src.index("class Tail(")]
    assert "        y_channels = width\n        for b in range(depth):\n" in stage
    assert "        y = self.pre(x)\n        for b in range(self.depth):\n" \
        '            y = getattr(self, f"b{b}")(y)\n        return y\n' in stage
    tail = src[src.index("class Tail("):src.index("class N(")]
    assert "self.b1 = Blk(8" in tail and "range(" not in tail
