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

from _tiny_net import TINY, write_images
from archc.backends import weights

import archc
from archc import ArchError
from archc._cli import main

DATA = Path(__file__).parent / "data"


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
    torch.manual_seed(7)    # not the seed training initialises with
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


NESTED = """block two(x: tensor) {
    a = x -> a: conv(4, kernel=1, bias=false)
    b = x -> b: conv(5, kernel=1, bias=false)
    return cat: concat([a, b])
}

network Nested() {
    x = input(3, 8, 8)
    y = blk: two(x)
    return y -> pool: global_avgpool -> flatten: flatten -> fc: linear(2)
}
"""


def test_a_module_registered_first_in_its_parent_is_matched():
    """timm's Xception registers a block's skip convolution before its main path; archc
    holds it after: the checkpoint's module moves after the rest of its parent."""
    net = archc.load_source(NESTED)
    state = archc.build_module(net).state_dict()
    theirs = {"m.skip.weight": state["blk.b.weight"], "m.a.weight": state["blk.a.weight"],
              "head.weight": state["fc.weight"], "head.bias": state["fc.bias"]}
    _same(archc.weights.import_state_dict(net, theirs), state)


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
    _, _, state = tiny
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
    for name in ("timm_counts.json",):
        for row in json.loads((DATA / name).read_text())["models"].values():
            ref = row["archc"]
            found.add(ref["network"] if "network" in ref else Path(ref["file"]).stem)
    return found


def test_measured_imports_cover_every_twin_and_pass():
    """Every bundled network with a twin imports from at least one library name with the
    same outputs; a name that does not import was refused with an error (never imported
    with other outputs); docs/weights.md lists every row."""
    doc = json.loads((DATA / "import_golden.json").read_text())
    rows = doc["models"]
    bundled = set(archc.bundled_networks())
    assert {row["network"] for row in rows.values()} <= bundled
    passed = {row["network"] for row in rows.values() if row["passed"]}
    assert _networks_with_a_twin() & bundled <= passed
    docs = (Path(__file__).parents[1] / "docs" / "weights.md").read_text()
    assert doc["tolerance"] <= 1e-5
    for key, row in rows.items():
        assert key == f"{row['library']}:{row['model']}"
        if row["passed"]:
            assert row["max_rel_diff"] <= doc["tolerance"] and row["tensors"] > 0, key
        else:
            assert "max_rel_diff" not in row and "does not fit" in row["error"], key
        assert f"`{row['model']}`" in docs, key


# ---- fine-tune and compress a pretrained model: three commands ---------------------------
@pytest.fixture(scope="module")
def pretrained(files):
    root, arch, state = files
    write_images(str(root / "data"), np.random.default_rng(3))
    assert main(["weights", "import", arch, str(root / "ckpt.pth"), "-o",
                 str(root / "pretrained.safetensors")]) == 0
    return root, arch, state


# a learning rate so small that one epoch leaves the weights where they started
STILL = ["--epochs", "1", "--batch-size", "16", "--lr", "1e-9", "--weight-decay", "0",
         "--schedule", "constant", "--no-progress"]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_train_starts_from_the_imported_weights(pretrained, backend):
    pytest.importorskip("jax" if backend == "jax" else "torch")
    root, arch, state = pretrained
    out = root / f"run-{backend}"
    assert main(["train", arch, "--data", str(root / "data"), "--backend", backend,
                 "--init-from", str(root / "pretrained.safetensors"), "--out", str(out),
                 *STILL]) == 0
    final = weights.load(out / "model.safetensors")
    for k in ("c1.weight", "c2.weight", "se.fc1.weight", "fc.weight", "b1.weight"):
        if k in state:
            np.testing.assert_allclose(final[k], state[k].numpy(), atol=1e-6, err_msg=k)
    fresh = archc.build_module(archc.load_source(TINY)).state_dict()["c1.weight"].numpy()
    assert not np.allclose(final["c1.weight"], fresh, atol=1e-3)   # not the initialisation


def test_init_from_checks_the_weights(pretrained, capsys):
    root, arch, _ = pretrained
    other = root / "other.safetensors"
    weights.save(other, {"c1.weight": np.zeros((8, 3, 3, 3), np.float32)})
    common = ["train", arch, "--data", str(root / "data"), "--backend", "torch",
              "--out", str(root / "bad-run"), *STILL]
    assert main([*common, "--init-from", str(other)]) == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and "no weights for" in err and "archc weights import" in err
    assert main([*common, "--init-from", str(root / "ckpt.pth")]) == 2
    assert "not a safetensors file" in capsys.readouterr().err
    wrong = dict(weights.load(root / "pretrained.safetensors"))
    wrong["fc.weight"] = np.zeros((2, 8), np.float32)
    weights.save(root / "wrong.safetensors", wrong)
    assert main([*common, "--init-from", str(root / "wrong.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "'fc.weight' is (2, 8), layer 'fc' of Tiny needs (2, 16)" in err, err
    assert not (root / "bad-run").exists()
    with pytest.raises(ArchError, match="init_from="):
        archc.train(archc.load_source(TINY), str(root / "data"), backend="torch",
                    out=str(root / "bad-run2"), init_from=str(other), progress=False)


@pytest.mark.slow   # the compression pipeline after training
def test_fine_tune_and_compress_a_pretrained_model(pretrained):
    """archc weights import -> archc train --init-from -> archc compress run."""
    pytest.importorskip("jax")
    root, arch, _ = pretrained
    run = root / "finetuned"
    assert main(["train", arch, "--data", str(root / "data"), "--init-from",
                 str(root / "pretrained.safetensors"), "--out", str(run), "--epochs", "1",
                 "--batch-size", "16", "--no-progress"]) == 0
    out = root / "compressed"
    assert main(["compress", "run", arch, "--data", str(root / "data"), "--from", str(run),
                 "--out", str(out), "--mini-per-class", "6", "--fractions", "0.3,0.6",
                 "--finetune-epochs", "1", "--qat-epochs", "1", "--calibration-images", "24",
                 "--bins", "1024", "--no-progress", "--max-drop", "50"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sparsity"] > 0
