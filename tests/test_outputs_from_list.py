"""`outputs()` from a list of [name, tensor] pairs built in a loop: a feature pyramid whose
`out_indices` parameter picks the stages it returns, as timm's `features_only` networks do."""
from __future__ import annotations

import pytest

import archc
from archc.compiler import ArchError

PYRAMID = """
network Pyramid(out_indices: list = [1, 2, 3]) {
    x = input(3, 32, 32)
    feats = []
    for i in range(4) {
        x = x -> "s{i}": conv(4 * (i + 1), kernel=3, stride=2, padding=1) -> relu
        feats = feats + [["p" + str(i), x]]
    }
    chosen = []
    for i in out_indices {
        chosen = chosen + [feats[i]]
    }
    return outputs(chosen)
}
"""


def test_outputs_from_pairs_built_in_a_loop():
    net = archc.load_source(PYRAMID)
    assert [name for name, _ in net.outputs] == ["p1", "p2", "p3"]
    net = archc.load_source(PYRAMID, out_indices=[0, 3])
    assert [name for name, _ in net.outputs] == ["p0", "p3"]
    a = archc.analyze(net)
    assert [o["name"] for o in archc.to_json_dict(a)["outputs"]] == ["p0", "p3"]


def test_the_pairs_and_the_keywords_give_the_same_network():
    by_list = archc.load_source(PYRAMID, out_indices=[1, 2])
    by_keywords = archc.load_source(PYRAMID.replace("return outputs(chosen)",
                                                    "return outputs(p1=feats[1][1], "
                                                    "p2=feats[2][1])"), out_indices=[1, 2])
    assert by_list.outputs == by_keywords.outputs
    assert archc.build_source(by_list) == archc.build_source(by_keywords)


def test_the_torch_module_returns_every_named_output():
    torch = pytest.importorskip("torch")
    net = archc.load_source(PYRAMID, out_indices=[0, 2])
    module = archc.build_module(net).eval()
    y = module(torch.zeros(2, 3, 32, 32))
    assert list(y) == ["p0", "p2"]
    assert tuple(y["p0"].shape) == (2, 4, 16, 16) and tuple(y["p2"].shape) == (2, 12, 4, 4)


@pytest.mark.parametrize("ret, message", [
    ('outputs([x])', "expected a list of [name, tensor] pairs"),
    ('outputs(x)', "outputs() takes the outputs as name=tensor"),
    ('outputs([["a", x], ["a", x]])', "output 'a' is named twice"),
    ('outputs([["1a", x]])', 'output name "1a" is not a valid name'),
    ('outputs([["a", 3]])', "an output must be a tensor, got int 3"),
    ('outputs([["a", x]], b=x)', "not both"),
    ('outputs([])', "needs at least one name=tensor"),
])
def test_bad_pairs_are_positioned_errors(ret, message):
    src = f"network N() {{\n    x = input(3, 8, 8)\n    return {ret}\n}}\n"
    with pytest.raises(ArchError) as err:
        archc.load_source(src)
    assert message in str(err.value.message), err.value.message
    assert err.value.span is not None and err.value.span.line == 3
