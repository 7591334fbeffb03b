"""The PyTorch backend (issue 5): every bundled network lowers to a module whose parameter
count equals the analysis total exactly, whose every layer has its static shape at run
time, and which trains (forward + backward) on CPU at batch 2."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import archc  # noqa: E402
from archc.backends import _names, lowering, torch_backend  # noqa: E402
from archc.compiler import ArchError, library_dir, ops  # noqa: E402

from _runtime import (DEV_LOOP_NETWORKS, outputs, runtime_params,  # noqa: E402  (tests/)
                      slow_unless)

ROOT = Path(__file__).resolve().parents[1]
ARCHS = sorted(p.stem for p in Path(library_dir()).glob("*.arch"))
VARIANTS = [(n, runtime_params(n)) for n in ARCHS] + [
    ("sqnxt", {"width": 0.5}), ("sqnxt", {"width": 2.0, "stages": [1, 1, 2, 1]}),
    ("sqnxt", {"dropout": 0.3, "stages": [1, 1, 1, 1]}),
    ("se_sqnxt", {"width": 0.5, "stages": [1, 2, 8, 1]}),
    ("se_sqnxt", {"width": 2.0, "stages": [1, 1, 1, 1]}),
    ("shallow_sqnxt", {"width": 2.0, "stages": [1, 1, 2, 1]}), ("shallow_sqnxt", {"width": 0.5}),
]
# Networks above this many MACs per image run fwd+bwd only with ARCHC_SLOW_TESTS=1 (their
# parameter counts and every layer's shape are still checked, at their true input size).
HEAVY_MACS = 1_000_000_000


def _id(v):
    name, params = v
    return name + "".join(f"-{k}={v}" for k, v in params.items())


@pytest.fixture(scope="session")
def built():
    cache = {}

    def get(name, params, tap=False):
        key = (name, repr(sorted(params.items())), tap)
        if key not in cache:
            net = archc.load(name, **params)
            torch.manual_seed(0)
            cache[key] = (net, archc.analyze(net), torch_backend.compile_module(net, tap=True if tap else None))
        return cache[key]
    return get


def _static(shape_nchw) -> tuple:
    """A runtime tensor's per-example shape as the IR's (C, H, W)."""
    s = tuple(shape_nchw[1:])
    return s if len(s) == 3 else (s[0], 1, 1)


@pytest.mark.parametrize("variant", VARIANTS, ids=_id)
def test_param_count_equals_analysis(built, variant):
    net, analysis, module = built(*variant)
    assert sum(p.numel() for p in module.parameters()) == analysis.totals["params"]
    assert sum(b.numel() for b in module.buffers()
               if b.dtype.is_floating_point) == sum(lc.buffers for lc in analysis.layers)


@pytest.mark.parametrize("variant", slow_unless(VARIANTS, lambda v: v[0] in DEV_LOOP_NETWORKS),
                         ids=_id)
def test_every_layer_has_its_static_shape(built, variant):
    net, analysis, module = built(*variant, tap=True)
    seen = {}
    lowering.set_tap(module, lambda name, value: seen.setdefault(name, _static(value.shape)) and value)
    module.eval()
    with torch.no_grad():
        out = module(torch.randn(1, *net.input_shape))
    assert list(seen) == net.layers()
    assert {n: s for n, s in seen.items()} == {n: net.node(n)["shape"] for n in net.layers()}
    assert [_static(o.shape) for o in outputs(out)] == \
        [net.node(n)["shape"] for _, n in net.output_list()]


# the development loop trains the tests' small SqueezeNext variants only
@pytest.mark.parametrize("variant", slow_unless(
    VARIANTS, lambda v: v[0] in DEV_LOOP_NETWORKS and v[1]), ids=_id)
def test_forward_backward_batch2_with_hooks(built, variant):
    net, analysis, module = built(*variant)
    if analysis.totals["macs"] > HEAVY_MACS and not os.environ.get("ARCHC_SLOW_TESTS"):
        pytest.skip(f"{analysis.totals['macs']:,} MACs per image; set ARCHC_SLOW_TESTS=1")
    shapes = {}

    def hook(name):
        def record(mod, inputs, output):  # returns None: the output is left as it is
            shapes.setdefault(name, _static(output.shape))
        return record
    hooks = [m.register_forward_hook(hook(n))
             for n, m in module.named_modules() if not list(m.children()) and n]
    try:
        module.train()
        out = outputs(module(torch.randn(2, *net.input_shape)))
        sum(o.float().square().mean() for o in out).backward()
    finally:
        for h in hooks:
            h.remove()
    assert all(o.shape[0] == 2 for o in out)
    assert [_static(o.shape) for o in out] == [net.node(n)["shape"] for _, n in net.output_list()]
    stateful = [n for n in net.layers() if ops.get(net.node(n)["op"]).stateful]
    assert shapes == {n: net.node(n)["shape"] for n in stateful}  # hooks: module layers
    grads = [p.grad for p in module.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    module.zero_grad(set_to_none=True)


# ---- every op lowers, one place each -----------------------------------------------------
ALL_OPS = """
network AllOps(classes: int = 7) {
    x = input(3, 17, 15)
    x = x -> c1: conv(16, kernel=[3, 5], stride=[2, 1], padding=[1, 2], bias=false)
          -> b1: bn(eps=0.001, momentum=0.01) -> a1: relu6 -> n1: lrn(5, alpha=0.0002, beta=0.7, k=2.0)
    p = x -> mp: maxpool(3, stride=2, padding=1, ceil_mode=true) -> e1: elu(alpha=0.5)
    q = x -> ap: avgpool([2, 3], stride=[2, 2], padding=[1, 1], count_include_pad=false)
          -> l1: leaky_relu(slope=0.2)
    y = cat: concat(p, q)
    s1 = sl1: slice(y, 0, 8)
    s2 = sl2: slice(y, 8, 32)
    s1 = s1 -> g1: conv(8, kernel=3, padding="same", groups=4) -> t1: tanh
    s2 = s2 -> sw: swish -> hs: hswish -> id: identity -> ln: layer_norm(eps=1e-6)
          -> gn: group_norm(4) -> ge: gelu(approximate="tanh") -> ls: layer_scale(init=0.1)
    y = m: concat(s1, s2) -> d: dropout(0.25)
    u = y -> ct: conv_transpose(8, kernel=3, stride=2, padding=1, output_padding=[1, 0], groups=4,
                                dilation=[1, 2], bias=false)
          -> up: upsample(size=[5, 8], mode="bilinear")
    v = y -> un: upsample(2) -> pu: pixel_unshuffle(2) -> cs: channel_shuffle(8)
          -> pxs: pixel_shuffle(4) -> aap: adaptive_avgpool([5, 8])
    w = y -> amp: adaptive_maxpool([3, 5]) -> uc: upsample(size=[7, 9], mode="bilinear", align_corners=true)
          -> ws: slice(0, 16) -> cr: crop([5, 8])
    y = cat2: concat(u, v, w) -> dpth: drop_path(0.1)
    y = att: attention(y, y -> kv: slice(0, 16), y -> slice(16, 32), 4)
    g = y -> gm: global_maxpool -> fa: linear(32) -> bn2: bn -> hsig: hsigmoid
    y = sc: mul(y, g)
    z = y -> ga: global_avgpool -> sg: sigmoid
    w = y -> gb: global_avgpool -> fl: flatten -> r: relu
    y = s: add(z, w, z)
    return y -> fc: linear(classes, bias=true)
}
"""


def test_every_registry_op_has_a_lowering():
    assert set(ops.REGISTRY) - {"input"} <= set(torch_backend.LOWER)


def test_all_ops_network_lowers_exactly():
    net = archc.load_source(ALL_OPS)
    assert {net.node(n)["op"] for n in net.graph.nodes} == set(ops.REGISTRY)
    seen = {}
    module = torch_backend.compile_module(
        net, tap=lambda name, value: seen.setdefault(name, _static(value.shape)) and value)
    assert sum(p.numel() for p in module.parameters()) == archc.analyze(net).totals["params"]
    out = module(torch.randn(2, *net.input_shape))
    out.sum().backward()
    assert seen == {n: net.node(n)["shape"] for n in net.layers()}
    assert module.b1.eps == 0.001 and module.b1.momentum == 0.01
    assert isinstance(module.d, torch.nn.Dropout) and module.d.p == 0.25
    assert type(module.dpth).__name__ == "DropPath" and module.dpth.p == 0.1
    assert module.ct.output_padding == (1, 0) and module.ct.dilation == (1, 2)


def test_an_op_without_lowering_is_a_clear_error():
    net = archc.load("se_sqnxt")
    net.graph.nodes["stage2.block1.conv3.conv"]["op"] = "frobnicate"
    with pytest.raises(ArchError) as err:
        torch_backend.build_source(net)
    assert "frobnicate" in err.value.message and "stage2.block1.conv3.conv" in err.value.message
    assert err.value.span is not None


# ---- the generated module -------------------------------------------------------------------
def test_state_dict_keys_follow_the_ir_names():
    module = archc.build_module("se_sqnxt", stages=[1, 2, 4, 1])
    keys = module.state_dict().keys()
    assert "stage3.block2.conv1.conv.weight" in keys
    assert "stage1.block1.se.fc1.bias" in keys and "bn1.running_var" in keys
    assert module.get_submodule("stage3.block2.conv1.conv").kernel_size == (1, 1)
    assert type(module).__name__ == "SESqueezeNext"


def test_source_is_deterministic_torch_only_and_formatted():
    a = archc.build_source("se_sqnxt", width=0.5)
    b = archc.build_source("se_sqnxt", width=0.5)
    assert a == b
    tree = ast.parse(a)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {n.name for n in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    # torch is the only third-party import (OrderedDict names the stages' blocks)
    assert "torch" in imported and imported <= {"torch", "torch.nn.functional", "collections",
                                                 "math"}
    assert "archc" not in a.replace("archc build", "").replace("by archc", "")
    assert all(len(line) <= 99 for line in a.splitlines())
    assert "width = 0.5" in a  # parameters as used, in the class docstring
    cls = [n for n in tree.body if isinstance(n, ast.ClassDef)][-1]  # the network, after its blocks
    assert cls.name == "SESqueezeNext" and "stages = [1, 2, 4, 1]" in ast.get_docstring(cls)


def test_checked_in_example_is_current():
    example = ROOT / "docs" / "examples" / "se_sqnxt_torch.py"
    assert example.read_text() == archc.build_source("se_sqnxt")


def test_example_imports_as_users_do(tmp_path, monkeypatch):
    (tmp_path / "se_sqnxt.py").write_text(archc.build_source("se_sqnxt"))
    monkeypatch.syspath_prepend(str(tmp_path))
    from se_sqnxt import SESqueezeNext
    model = SESqueezeNext().eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    sys.modules.pop("se_sqnxt", None)


def test_dropout_is_a_module_with_train_eval():
    module = archc.build_module("se_sqnxt", dropout=0.5, stages=[1, 1, 1, 1]).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(module(x), module(x))
        module.train()
        torch.manual_seed(1)
        a = module(x)
        torch.manual_seed(2)
        assert not torch.equal(a, module(x))


def test_layer_names_that_clash_with_python_or_nn_module_are_renamed():
    src = """network Clash() {
        x = input(3, 8, 8)
        return x -> train: conv(4, kernel=1) -> forward: bn -> type: relu -> flatten: flatten
                 -> parameters: linear(2)
    }"""
    net = archc.load_source(src)
    module = torch_backend.compile_module(net)
    assert {"train_.weight", "forward_.running_mean", "parameters_.weight"} <= set(
        module.state_dict())
    assert module(torch.randn(2, 3, 8, 8)).shape == (2, 2)
    assert _names.identifier("class") == "class_"


# ---- weight initialisation -------------------------------------------------------------------
def test_xavier_uniform_from_the_arch_file():
    net = archc.load("sqnxt", stages=[1, 1, 1, 1])
    assert net.params["init"] == "xavier_uniform"
    src = torch_backend.build_source(net)
    assert "nn.init.xavier_uniform_(m.weight)" in src
    torch.manual_seed(0)
    module = torch_backend.compile_module(net)
    conv = module.stage1.block1.conv1.conv
    assert torch.count_nonzero(conv.bias) == 0
    fan_in, fan_out = conv.in_channels, conv.out_channels  # 1x1 kernel
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound


def test_init_option_overrides_and_default_is_pytorch():
    net = archc.load("sqnxt", stages=[1, 1, 1, 1])
    src = torch_backend.build_source(net, init="default")
    assert "init_weights" not in src
    module = torch_backend.compile_module(net, init="default")
    assert torch.count_nonzero(module.stage1.block1.conv1.conv.bias) > 0
    assert "kaiming_normal_" in torch_backend.build_source(net, init="kaiming_normal")
    with pytest.raises(ArchError, match="unknown weight initialisation"):
        torch_backend.build_source(net, init="glorot")
    with pytest.raises(ArchError, match="unknown weight initialisation"):
        archc.build_source("sqnxt", stages=[1, 1, 1, 1], init="glorot")  # the network's parameter
    assert "kaiming_normal_" in archc.build_source("sqnxt", weight_init="kaiming_normal",
                                                   stages=[1, 1, 1, 1], init="xavier_normal")


# ---- the CLI ------------------------------------------------------------------------------------
def _archc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "archc", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_cli_build_writes_deterministic_file(tmp_path):
    out = tmp_path / "net.py"
    r1 = _archc("build", "se_sqnxt", "--backend", "torch", "-D", "width=0.5", "-o", str(out))
    assert r1.returncode == 0, r1.stderr
    first = out.read_bytes()
    r2 = _archc("build", "se_sqnxt", "-D", "width=0.5", "-o", str(out))
    assert r2.returncode == 0 and out.read_bytes() == first
    r3 = _archc("build", "se_sqnxt", "-D", "width=0.5")
    assert r3.stdout.encode() == first
    assert list(tmp_path.iterdir()) == [out]  # no temp files left behind


def test_cli_build_errors_leave_nothing_written(tmp_path):
    out = tmp_path / "net.py"
    r = _archc("build", "se_sqnxt", "-D", "stages=[1,2]", "-o", str(out))
    assert r.returncode == 2 and "error" in r.stderr and "Traceback" not in r.stderr
    r = _archc("build", "sqnxt", "--init", "glorot", "-o", str(out))
    assert r.returncode == 2 and "unknown weight initialisation" in r.stderr
    out.write_text("keep me")
    r = _archc("build", "se_sqnxt", "-D", "width=-1", "-o", str(out))
    assert r.returncode == 2 and out.read_text() == "keep me"
    assert list(tmp_path.iterdir()) == [out]
    r = _archc("build", "se_sqnxt", "--backend", "tensorflow")
    assert r.returncode == 2
