"""archc.weights.import_state_dict and `archc weights import`: a state dict of another
implementation of a network, matched by structure (order and shapes, splitting and
concatenating where one side groups what the other splits), becomes archc's weights; any
tensor that does not fit is an error naming it and the archc layer, never a partial load.
The measured results against timm and torchvision (tools/measure_imports.py) are checked
for completeness here; neither library is needed."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import archc  # noqa: E402
from archc import ArchError  # noqa: E402
from archc._cli import main  # noqa: E402
from archc.backends import weights  # noqa: E402

DATA = Path(__file__).parent / "data"

TINY = """import "std/se.arch"

network Tiny(classes: int = 2) {
    x = input(3, 8, 8)
    x = x -> c1: conv(8, kernel=3, padding=1) -> b1: bn -> r1: relu
    y = x -> c2: conv(8, kernel=3, padding=1, bias=false) -> b2: bn -> r2: relu
    y = se: se(y, ratio=4)
    x = add: add(x, y) -> r3: relu
    x = x -> c3: conv(16, kernel=1, stride=2) -> b3: bn -> r4: relu
    return x -> pool: global_avgpool -> flatten: flatten -> fc: linear(classes)
}
"""

# two 1x1 convolutions of the same input, concatenated: what another implementation holds
# as one 1x1 convolution of twice the channels
TWO = """network Two() {
    x = input(3, 8, 8)
    a = x -> a: conv(4, kernel=1, bias=false)
    b = x -> b: conv(4, kernel=1, bias=false)
    y = cat: concat([a, b])
    return y -> pool: global_avgpool -> flatten: flatten -> fc: linear(2)
}
"""


def _randomised(module):
    """The module's state dict with non-trivial BN statistics (fresh BN is the identity)."""
    torch.manual_seed(5)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return module.state_dict()


def _foreign(state: dict) -> dict:
    """The same tensors under another implementation's names (torchvision-like: numbered
    Sequential members), counters kept."""
    return {f"features.{i}.{k.rpartition('.')[2]}": v for i, (k, v) in enumerate(state.items())}


@pytest.fixture(scope="module")
def tiny():
    net = archc.load_source(TINY)
    torch.manual_seed(0)
    module = archc.build_module(net).eval()
    return net, module, _randomised(module)


def _same(result: dict, state: dict) -> None:
    assert list(result) == list(state)
    for k, v in state.items():
        if not k.endswith("num_batches_tracked"):
            assert np.array_equal(result[k], v.numpy()), k


def test_renamed_state_dict_round_trips_with_the_same_outputs(tiny):
    net, module, state = tiny
    result = archc.weights.import_state_dict(net, _foreign(state))
    _same(result, state)
    other = archc.build_module(archc.load_source(TINY)).eval()
    other.load_state_dict({k: torch.from_numpy(v) for k, v in result.items()}, strict=True)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(other(x), module(x))


def test_nested_checkpoints_are_unwrapped(tiny):
    net, _, state = tiny
    result = archc.weights.import_state_dict(
        net, {"epoch": 3, "arch": "tiny", "state_dict": _foreign(state)})
    _same(result, state)
    nested = {"model": {"body": {k: v for k, v in list(_foreign(state).items())[:10]},
                        "head": dict(list(_foreign(state).items())[10:])}}
    _same(archc.weights.import_state_dict(net, nested), state)


def test_bundled_name_with_parameters():
    module = archc.build_module("resnet", depth=18, classes=10, resolution=32).eval()
    state = _randomised(module)
    result = archc.weights.import_state_dict("resnet", _foreign(state), depth=18, classes=10,
                                             resolution=32)
    _same(result, state)


def test_split_and_grouped_tensors_are_joined_and_split():
    net = archc.load_source(TWO)
    state = archc.build_module(net).state_dict()
    # the other side splits c... as archc holds it whole: fc.weight in two row blocks
    split = {"a.w": state["a.weight"], "b.w": state["b.weight"],
             "fc.w.0": state["fc.weight"][:1], "fc.w.1": state["fc.weight"][1:],
             "fc.b": state["fc.bias"]}
    _same(archc.weights.import_state_dict(net, split), state)
    # the other side groups what archc splits: a and b as one 8-channel convolution
    grouped = {"ab.weight": torch.cat([state["a.weight"], state["b.weight"]]),
               "fc.weight": state["fc.weight"].reshape(2, 8, 1, 1),   # a 1x1 conv head
               "fc.bias": state["fc.bias"]}
    _same(archc.weights.import_state_dict(net, grouped), state)


def test_a_layer_scale_registered_first_is_matched(tiny):
    """torch registers a module's own parameters before its sub-modules' (timm's ConvNeXt
    block: gamma first); archc holds them in a layer after the block's others."""
    net = archc.load_source(TWO)
    state = archc.build_module(net).state_dict()
    moved = {"block.fc_b": state["fc.bias"], "block.convs.a": state["a.weight"],
             "block.convs.b": state["b.weight"], "block.fc.weight": state["fc.weight"]}
    _same(archc.weights.import_state_dict(net, moved), state)


def test_another_network_is_a_clear_error(tiny):
    net, _, _ = tiny
    other = archc.build_module("resnet", depth=18, classes=10, resolution=32).state_dict()
    with pytest.raises(ArchError) as err:
        archc.weights.import_state_dict(net, other)
    msg = err.value.message
    assert "'layer1.0.conv1.weight'" not in msg   # the first misfit, not a later one
    assert "'conv1.weight' (64x3x7x7)" in msg and "layer 'c1' of Tiny" in msg
    assert "8x3x3x3" in msg and "another network" in err.value.hint


def test_count_mismatch_is_an_error(tiny):
    net, _, state = tiny
    more = {**_foreign(state), "extra.weight": torch.zeros(3)}
    with pytest.raises(ArchError, match=r"1 more than Tiny has: 'extra.weight'"):
        archc.weights.import_state_dict(net, more)
    fewer = dict(list(_foreign(state).items())[:-1])
    with pytest.raises(ArchError, match=r"none is left for layer 'fc' \('fc.bias', 2\)"):
        archc.weights.import_state_dict(net, fewer)


@pytest.mark.parametrize("bad, message", [
    ([1, 2], "is a list, not a state dict"),
    ({"a.weight": [1.0, 2.0]}, "'a.weight' is a list, not a tensor"),
    ({}, "holds no tensors"),
    ({3: torch.zeros(2)}, "a key 3 that is not a string"),
])
def test_not_a_state_dict(tiny, bad, message):
    with pytest.raises(ArchError, match=message):
        archc.weights.import_state_dict(tiny[0], bad)


def test_non_finite_weights_are_refused(tiny):
    net, _, state = tiny
    bad = _foreign(state)
    bad["features.0.weight"] = bad["features.0.weight"].clone()
    bad["features.0.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ArchError, match="non-finite"):
        archc.weights.import_state_dict(net, bad)


# ---- archc weights import ----------------------------------------------------------------
class Unsafe:   # pickled by reference: torch.load(weights_only=True) must refuse it
    pass


@pytest.fixture(scope="module")
def files(tiny, tmp_path_factory):
    net, _, state = tiny
    root = tmp_path_factory.mktemp("import")
    arch = root / "tiny.arch"
    arch.write_text(TINY)
    torch.save({"model": _foreign(state), "epoch": 2}, root / "ckpt.pth")
    weights.save(root / "ckpt.safetensors", {k: v.numpy() for k, v in _foreign(state).items()})
    torch.save({"model": _foreign(state), "obj": Unsafe()}, root / "unsafe.pth")
    (root / "damaged.pt").write_bytes(b"PK\x03\x04 not really a zip" * 10)
    (root / "ckpt.txt").write_text("weights")
    other = archc.build_module("resnet", depth=18, classes=10, resolution=32).state_dict()
    torch.save(other, root / "resnet.pth")
    return root, str(arch), state


@pytest.mark.parametrize("checkpoint", ["ckpt.pth", "ckpt.safetensors"])
def test_cli_imports_pth_and_safetensors(files, checkpoint, capsys):
    root, arch, state = files
    out = root / f"from-{checkpoint}.safetensors"
    assert main(["weights", "import", arch, str(root / checkpoint), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    loaded = weights.load(out)
    _same({k: loaded[k] for k in state}, state)


@pytest.mark.parametrize("checkpoint, output, message", [
    ("unsafe.pth", "o.safetensors", "holds more than tensors"),
    ("damaged.pt", "o.safetensors", "cannot be read as a PyTorch checkpoint"),
    ("ckpt.txt", "o.safetensors", "archc reads .safetensors and .pth/.pt"),
    ("missing.pth", "o.safetensors", "no such file"),
    ("resnet.pth", "o.safetensors", "does not fit layer 'c1' of Tiny"),
    ("ckpt.pth", "o.pth", "archc writes weights as safetensors"),
    ("ckpt.safetensors", "ckpt.safetensors", "is the same file as the checkpoint"),
    (".", "o.safetensors", "archc reads .safetensors"),
])
def test_cli_bad_inputs_exit_2(files, checkpoint, output, message, capsys):
    root, arch, _ = files
    before = sorted(os.listdir(root))
    code = main(["weights", "import", arch, str(root / checkpoint), "-o", str(root / output)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert sorted(os.listdir(root)) == before     # nothing written


def test_cli_folder_named_pth_is_refused(files, capsys):
    root, arch, _ = files
    (root / "folder.pth").mkdir(exist_ok=True)
    assert main(["weights", "import", arch, str(root / "folder.pth"), "-o",
                 str(root / "o.safetensors")]) == 2
    assert "is not a regular file" in capsys.readouterr().err


# ---- measured against timm and torchvision (tools/measure_imports.py) --------------------
def _networks_with_a_twin() -> set:
    """The bundled networks with a timm or torchvision counterpart, from the other tables
    that compare them (torchvision's equivalence test, timm's golden counts)."""
    from test_torchvision_equivalence import MAPS
    found = {case.split("@")[0] for case in MAPS}
    for name in ("timm_counts.json", "timm_attention_counts.json"):
        for row in json.loads((DATA / name).read_text())["models"].values():
            if "network" in row:
                found.add(row["network"])
            elif "archc" in row:
                found.add(Path(row["archc"]["file"]).stem)
    return found


def test_measured_imports_cover_every_twin_and_pass():
    doc = json.loads((DATA / "import_golden.json").read_text())
    rows = doc["models"]
    bundled = set(archc.bundled_networks())
    recorded = {row["network"] for row in rows.values()}
    assert recorded <= bundled
    assert _networks_with_a_twin() & bundled <= recorded
    for key, row in rows.items():
        assert key == f"{row['library']}:{row['model']}"
        assert row["passed"] and row["max_rel_diff"] <= doc["tolerance"] <= 1e-5, key
        assert row["tensors"] > 0
