"""The Python API keeps network parameters apart from its own keywords, and names the
keyword an error is about (issue 12, class 12)."""
from __future__ import annotations

import pytest

import archc
from archc import ArchError

SRC = ("network N(bits: int = 4, backend: string = \"b\", filename: string = \"f\", "
       "width: float = 1.0, target: int = 0, weight_init: string = \"w\") {\n"
       " x = input(3, 8, 8)\n"
       " x = conv(x, 8 * bits, kernel=1)\n return x\n}\n")


@pytest.fixture
def arch(tmp_path):
    p = tmp_path / "n.arch"
    p.write_text(SRC)
    return str(p)


def message(fn, *a, **kw) -> str:
    with pytest.raises(ArchError) as info:
        fn(*a, **kw)
    return info.value.format()


@pytest.mark.parametrize("fn, keyword", [
    (archc.analyze, "bits"), (archc.build_source, "backend"), (archc.build_module, "backend"),
    (archc.build_onnx, "weight_init"),
])
def test_an_own_keyword_that_is_also_a_network_parameter_is_an_error(arch, fn, keyword):
    out = message(fn, arch, **{keyword: {"bits": 8, "backend": "jax"}.get(keyword, "default")})
    assert out.startswith(f"error: archc.{fn.__name__}(): keyword argument '{keyword}' is "
                          "ambiguous: it is an option of"), out
    assert f"archc.load(target, {keyword}=...)" in out


def test_network_parameters_go_to_load(arch):
    net = archc.load(arch, bits=8, backend="x", filename="y", target=3)
    assert net.params["bits"] == 8 and net.params["target"] == 3
    a = archc.analyze(net, bits=8)
    assert a.totals["precision_bits"] == 8 and a.totals["params"] == 3 * 64 + 64
    assert archc.analyze(arch).totals["precision_bits"] == 32  # own default, network default
    out = message(archc.load_source, SRC, filename="z")
    assert "keyword argument 'filename' is ambiguous" in out
    program = archc.compiler.load_program(source=SRC, filename="s.arch")
    net = archc.load(program, filename="z")
    assert net.file == "s.arch" and net.params["filename"] == "z"


def test_parameters_for_a_built_network_are_an_error(arch):
    out = message(archc.analyze, archc.load(arch), width=0.5)
    assert "network parameters (width) cannot be applied to a Network that is already " \
           "built" in out


@pytest.mark.parametrize("kw, text", [
    ({"width": "wide"}, "keyword argument 'width': parameter 'width': expected float, got "
                        "string \"wide\""),
    ({"widht": 0.5}, "keyword argument 'widht': network 'N' has no parameter 'widht'"),
    ({"width": float("nan")}, "keyword argument 'width': nan is not a finite number"),
    ({"width": float("inf")}, "keyword argument 'width': inf is not a finite number"),
    ({"bits": 2 ** 70}, "keyword argument 'bits': integer 1180591620717411303424 is larger"),
    ({"bits": object()}, "keyword argument 'bits': object is not a value of the language"),
    ({"bits": [0] * 200_000}, "keyword argument 'bits': list longer than 100000 elements"),
])
def test_errors_about_python_values_name_the_keyword(arch, kw, text):
    out = message(archc.load, arch, **kw)
    assert out.startswith(f"error: archc.load(): {text}"), out
    assert "<python>" not in out


def test_deeply_nested_python_values_are_an_error_not_a_recursion(arch):
    v = [1]
    for _ in range(10_000):
        v = [v]
    out = message(archc.load, arch, bits=v)
    assert "keyword argument 'bits': lists nested more than 100 levels deep" in out


def test_python_values_are_converted(arch):
    np = pytest.importorskip("numpy")
    net = archc.load(arch, bits=np.int64(2), width=np.float32(0.5))
    assert net.params["bits"] == 2 and type(net.params["bits"]) is int
    assert type(net.params["width"]) is float


def test_compiler_load_takes_the_file_positionally(tmp_path):
    """archc.compiler.load / load_source: a network parameter may be called `target` or
    `text` (the file or source is positional only)."""
    from archc import compiler as C
    src = ("network N(target: int = 4, text: int = 2) {\n    x = input(3, 8, 8)\n"
           "    return x -> c: conv(target * text, kernel=1)\n}\n")
    (tmp_path / "t.arch").write_text(src)
    assert C.load(str(tmp_path / "t.arch"), target=5).node("c")["attrs"]["out"] == 10
    assert C.load_source(src, text=3).node("c")["attrs"]["out"] == 12
