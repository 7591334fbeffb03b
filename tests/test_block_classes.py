"""Every block class of every generated file, built as a user of the file builds it (torch and
JAX, every bundled network): with the arguments its network used, and with only its required
arguments (the others at the class's defaults). Both build what the signature says: the
first has the tensors of that call (names and shapes of the network's own module at the
call's path); the second those of archc's elaboration of the block called with the same
required arguments and the .arch defaults for the rest. JAX constructors run under
nnx.eval_shape (the same code, abstract values: VGG-16's 138 M parameters are never drawn)."""
from __future__ import annotations

import ast
import json
import re
from functools import partial
from pathlib import Path

import pytest

import archc
from archc.backends import lowering as L
from archc.backends import torch_backend as tb
from archc.backends._plan import Plan
from archc.compiler import bundled_networks, ops
from archc.compiler._values import Tensor

ROOT = Path(__file__).resolve().parents[1]


def arch_literal(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(arch_literal, v)) + "]"
    return repr(v)


def torch_shapes(module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def jax_shapes(module) -> dict:
    from flax import nnx
    out = {}

    def walk(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = tuple(v.shape)
    walk(nnx.to_pure_dict(nnx.state(module)), "")
    return out


def below(shapes: dict, path: str) -> dict:
    prefix = path + "."
    return {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}


def arch_file(definition) -> str:
    path = Path(definition.file)
    return str((path if path.is_absolute() or path.exists() else ROOT / path).resolve())


def defaults_network(net, cp, scope):
    """A network calling the block with the class's required arguments only: archc's
    elaboration of what the class builds with its defaults (None: not expressible so)."""
    d = net.definitions[cp.definition]
    tensor_params = [p for p in d.params if isinstance(scope.args[p.name], Tensor)]
    if len(tensor_params) != 1 or not isinstance(scope.output, Tensor):
        return None
    # the class's required arguments, and the .arch parameters the class has none for, at
    # the values it was specialised to (a loop over `rates` unrolled, MobileOne's `branches`
    # copies): the class has no default for those, whatever the .arch's is
    taken = {archc_name for _, archc_name, _ in cp.params}
    required = {archc_name for _, archc_name, default in cp.params if default is None} | \
        {p.name for p in d.params if p.name not in taken}
    c, h, w = scope.args[tensor_params[0].name].shape
    args = [f"{tensor_params[0].name}=x"] + [
        f"{p.name}={arch_literal(scope.args[p.name])}" for p in d.params
        if p.name in required and p not in tensor_params]
    return archc.load_source(
        blocks_of(arch_file(d)) + f'\nnetwork Defaults() {{\n    x = input({c}, {h}, {w})\n'
        f'    return blk: {cp.definition}({", ".join(args)})\n}}\n')


def blocks_of(path: str) -> str:
    """The text of a bundled .arch file without its network definition (the last one in
    every file that has one), its imports made relative to the library."""
    from archc.compiler._loader import library_dir
    folder = Path(path).parent.relative_to(library_dir().resolve())
    lines = Path(path).read_text().splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("network ")), len(lines))
    return "\n".join(re.sub(r'^import "(.*)"', lambda m: f'import "{folder / m.group(1)}"', ln)
                     for ln in lines[:start]) + "\n"


def check_network(name: str, backend: str):
    net = archc.load(name)
    if backend == "torch":
        mod, shapes = tb, torch_shapes
        plan = Plan(net, tb.BACKEND)
        def extra():
            return {}

        def build(make):
            return make()
    else:
        from flax import nnx

        from archc.backends import jax_backend as mod
        shapes = jax_shapes
        plan = Plan(net, mod.BACKEND)
        def extra():   # made inside the traced constructor
            return {"rngs": nnx.Rngs(0)}

        def build(make):   # the constructor run abstractly: shapes without drawing values
            return nnx.eval_shape(make)
    def construct(cls, *args, **kwargs):   # extra() made inside the constructor's trace
        return build(lambda: cls(*args, **kwargs, **extra()))
    ns = L.exec_source(mod.build_source(net), net, backend)
    whole = shapes(build(partial(mod.compile_module, net)))
    compared = 0
    for cp in plan.classes:
        r0 = cp.instances[0]
        scope = net.scopes[r0.scope]
        chans = [scope.args[archc_name].shape[0] for _, archc_name in cp.channel_params]
        given = {py: scope.args[a] for py, a, _ in cp.params}
        hoisted = plan.hoisted_args[r0.scope]
        cls = ns[cp.name]
        # 1. the arguments its network used: the tensors of that call
        built = construct(cls, *chans, **given, **hoisted)
        want = below(whole, plan.tree.path(r0.scope))
        assert shapes(built) == want, (name, cp.name)
        # 2. the required arguments only
        required = {py: v for py, v in given.items()
                    if next(d for p, _, d in cp.params if p == py) is None}
        built = construct(cls, *chans, **required, **hoisted)
        ref = None if hoisted else defaults_network(net, cp, scope)
        if ref is not None:
            assert shapes(built) == below(shapes(build(partial(mod.compile_module, ref))),
                                          "blk"), \
                (name, cp.name, sorted(set(given) - set(required)))
            compared += 1
    return compared


@pytest.mark.parametrize("name", bundled_networks())
def test_torch_block_classes_build_what_their_signatures_say(name):
    check_network(name, "torch")


@pytest.mark.parametrize("name", bundled_networks())
def test_jax_block_classes_build_what_their_signatures_say(name):
    pytest.importorskip("flax")
    check_network(name, "jax")


def test_defaults_that_select_another_body_are_not_defaults():
    """SqnxtBlock always builds SE (se_ratio's default 0.0 leaves it out and would divide
    by zero); ResnetBlock of ResNet-50 always builds the bottleneck (bottleneck=false)."""
    for name, cls, param in (("se_sqnxt", "SqnxtBlock", "se_ratio"),
                             ("resnet", "ResnetBlock", "bottleneck")):
        net = archc.load(name, **({"depth": 50} if name == "resnet" else {}))
        cp = next(c for c in Plan(net, tb.BACKEND).classes if c.name == cls)
        assert dict((p, d) for p, _, d in cp.params)[param] is None, (name, cls)


def test_docstrings_escape_no_quote_they_need_not():
    """A quote inside a triple-quoted docstring needs no backslash unless it starts a run of
    quotes; no generated file writes one (the .arch comments quote "none", "relu" ...)."""
    for name in bundled_networks():
        for backend in ("torch", "jax"):
            assert '\\"' not in archc.build_source(name, backend=backend), (name, backend)


# ---- families: one class with an argument instead of copies ------------------------------------
def test_mobilenet_v3_is_one_family_per_block():
    """ConvNormAct takes its activation (it was three classes, one per activation), Mbv3Block
    its optional expansion, SE and residual add (nine classes): at most 6 classes in all."""
    import ast

    from archc.backends import jax_backend
    for backend, mod in (("torch", tb), ("jax", jax_backend)):
        tree = ast.parse(archc.build_source("mobilenet_v3", backend=backend))
        classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and
                   n.name not in mod.BACKEND.helpers]   # JAX's layers (Conv, BatchNorm)
        assert classes == ["ConvNormAct", "Se", "Mbv3Block", "MobileNetV3"], backend
        assert len(classes) <= 6


def _mbv3_classes(backend: str) -> dict:
    net = archc.load("mobilenet_v3")
    from archc.backends import jax_backend
    mod = tb if backend == "torch" else jax_backend
    return L.exec_source(mod.build_source(net), net, backend)


def _same_as_archc(cls_name: str, args: tuple, kwargs: dict, call: str, shape: tuple):
    """mobilenet_v3's generated class `cls_name`, built with these arguments, equals archc's
    elaboration of the block call `call` (std/mobile.arch): the same state (names, shapes;
    an activation or a flag adds none) and, with the same random weights, the same output, in
    torch and in JAX. Returns the torch instance."""
    import numpy as np
    import torch
    from test_op_registry import _random_state
    ref_net = archc.load_source(f'import "std/mobile.arch"\nnetwork Ref() {{\n'
                                f'    x = input({", ".join(map(str, shape))})\n'
                                f'    return blk: {call}\n}}\n')
    ref = tb.compile_module(ref_net)
    state = _random_state(ref)
    mine = _mbv3_classes("torch")[cls_name](*args, **kwargs)
    assert torch_shapes(mine) == below(torch_shapes(ref), "blk"), call
    mine.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in state.items()})
    x = np.random.RandomState(1).randn(2, *shape).astype(np.float32)
    ref.eval()
    mine.eval()
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
        got = mine(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=call)
    if pytest.importorskip("flax"):
        import jax.numpy as jnp
        from flax import nnx

        from archc.backends import weights
        jref = weights.jax_module_from(ref_net, state)
        jmine = _mbv3_classes("jax")[cls_name](*args, **kwargs, rngs=nnx.Rngs(0))
        assert jax_shapes(jmine) == below(jax_shapes(jref), "blk"), call
        nnx.update(jmine, nnx.state(jref.blk))
        jmine.eval()
        y = np.asarray(nnx.jit(lambda m, v: m(v))(jmine, jnp.asarray(x.transpose(0, 2, 3, 1))))
        np.testing.assert_allclose(y, want.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4,
                                   err_msg=call)
    return mine


@pytest.mark.parametrize("act", list(ops.ACTIVATIONS) + ["none"])
def test_a_class_built_with_each_activation_is_archcs_elaboration(act):
    """ConvNormAct(..., act=...) applies what archc's conv_norm_act(..., act=...) does, for
    every activation archc knows (the file's table holds them all), and "none" skips it."""
    mine = _same_as_archc("ConvNormAct", (8, 8), {"kernel": 3, "act": act},
                          f'conv_norm_act(x, 8, kernel=3, act="{act}")', (8, 6, 6))
    assert (mine.act is None) == (act == "none")


@pytest.mark.parametrize("stride, out, expanded, use_se, residual", [
    (1, 16, 48, True, True), (2, 16, 48, True, False), (1, 24, 48, False, False),
    (1, 16, 16, False, True)])
def test_the_residual_add_is_a_flag_of_the_class(stride, out, expanded, use_se, residual):
    """Mbv3Block's identity shortcut (`if stride == 1 and cin == out`) is a boolean the
    constructor stores from that condition; forward() adds the input only when it holds.
    The optional expansion and SE members follow their own conditions."""
    act = "hswish"
    mine = _same_as_archc(
        "Mbv3Block", (16, 3, expanded, out, use_se, act), {"stride": stride},
        f'mbv3_block(x, 3, {expanded}, {out}, {arch_literal(use_se)}, "{act}", '
        f'stride={stride})', (16, 8, 8))
    assert mine.use_add is residual
    assert (mine.expand is None) == (expanded == 16) and (mine.se is None) == (not use_se)


def test_docstrings_cite_papers_by_authors_and_title():
    """Every paper a generated file cites by its authors ("He et al.", "Tan & Le") is cited
    somewhere in that file with its title: `He et al. 2016, "Deep Residual Learning ..."`."""
    authors = re.compile(r"\b([A-Z][A-Za-z'-]+(?: et al\.| & [A-Z][A-Za-z'-]+))")
    for name in bundled_networks():
        docs = [ast.get_docstring(n) or "" for n in ast.walk(ast.parse(archc.build_source(name)))
                if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))]
        flat = re.sub(r"(\w)- (\w)", r"\1-\2", " ".join(" ".join(docs).split()))   # wrapped
        outside_titles = re.sub(r'"[^"]*"', '""', flat)
        for a in set(authors.findall(outside_titles)):
            assert re.search(re.escape(a) + r'(?: \d{4})?(?:, | \()"', flat), (name, a)
        assert "slides" not in flat, name


def test_a_docstring_takes_the_comments_first_sentence():
    """An abbreviation's period (et al., Fig., e.g.), a '..' range and a title's colon do not
    end it."""
    from archc.backends._source import _first_phrase
    assert _first_phrase('A (B et al., "T: U"), after Nguyen et al., Fig. 3. Next: no') == \
        'A (B et al., "T: U"), after Nguyen et al., Fig. 3'
    assert _first_phrase("mnasnet0_5 .. mnasnet1_3 (width 0.5; 1.0): more") == \
        "mnasnet0_5 .. mnasnet1_3 (width 0.5; 1.0)"
    assert _first_phrase("conv -> bn (e.g. ResNet); then") == "conv -> bn (e.g. ResNet)"
    assert _first_phrase("One; two") == "One"
    assert _first_phrase('A 12" screen. Second') == 'A 12" screen'
