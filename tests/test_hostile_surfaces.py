"""Hostile input to the surfaces added after the language: output paths, weights files, run
folders and compression folders, numeric options, `sweep --runs`, `view`, `inspect`, the
multi-host options, data-set index files and `.quant` files (docs/hardening.md, "Newer
surfaces"). Every case runs the CLI in-process and expects exit 2, the file or flag named, no
traceback, within a per-case alarm, and the user's files unchanged."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import stat
import struct

import numpy as np
import pytest

from archc import _cli
from archc.compiler import analyze, load_program
from archc.compiler._loader import build as build_net
from _tiny_net import random_image_folder

TINY = ('network T(classes: int = 2, note: string = "plain") {\n x = input(3, 8, 8)\n'
        " x = conv(x, 4, kernel=3, stride=2) -> relu\n x = global_avgpool(x)\n"
        " x = flatten(x)\n return linear(x, classes)\n}\n")


def _alarm(signum, frame):
    raise TimeoutError("the command did not end in time")


def cli(capsys, *argv, seconds=20):
    """(exit code, stdout, stderr) of `archc argv`, in-process, within `seconds`."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        rc = _cli.main([str(a) for a in argv])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, out, err


def state(paths) -> dict:
    """What a user's files are: bytes' hash of regular files, the kind of the others."""
    out = {}
    for p in paths:
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                out[str(p)] = hashlib.sha256(f.read()).hexdigest()
        else:
            out[str(p)] = stat.S_IFMT(st.st_mode)
    return out


def refused(capsys, argv, named, keep=(), seconds=20):
    """The command exits 2 naming everything in `named`; the files in `keep` are unchanged."""
    before = state(keep)
    rc, _, err = cli(capsys, *argv, seconds=seconds)
    assert rc == 2, (rc, err)
    for n in ([named] if isinstance(named, str) else named):
        assert str(n) in err, (n, err)
    assert state(keep) == before
    return err


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.arch").write_text(TINY)
    return tmp_path


def safetensors_bytes(tensors: dict, dtype_override: str | None = None) -> bytes:
    """A safetensors file written by hand (so that damaged and bf16 ones can be made)."""
    header, blobs, at = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, np.float32)
        header[name] = {"dtype": dtype_override or "F32", "shape": list(arr.shape),
                        "data_offsets": [at, at + arr.nbytes]}
        blobs.append(arr.tobytes())
        at += arr.nbytes
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


# ---- outputs: -o never one of the inputs ---------------------------------------------------
def test_output_equal_to_an_input_is_refused(work, capsys):
    (work / "w.safetensors").write_bytes(safetensors_bytes({"x": np.ones(3)}))
    (work / "lib.arch").write_text("block b(x: tensor) {\n return relu(x)\n}\n")
    (work / "m.arch").write_text('import "lib.arch"\nnetwork M() {\n x = input(3, 8, 8)\n'
                                 " return b(x)\n}\n")
    os.link(work / "t.arch", work / "hard.arch")
    keep = [work / n for n in ("t.arch", "w.safetensors", "lib.arch", "m.arch", "hard.arch")]
    cases = [
        (["build", "t.arch", "-o", "t.arch"], "-o 't.arch' is the same file as the input"),
        (["build", "t.arch", "--backend", "jax", "-o", "./t.arch"], "same file"),
        (["build", "t.arch", "-o", "hard.arch"], "-o 'hard.arch' is the same file"),
        (["build", "m.arch", "-o", "lib.arch"], "'lib.arch'"),
        (["build", "t.arch", "--backend", "onnx", "--weights", "w.safetensors", "-o",
          "w.safetensors"], "the same file as --weights 'w.safetensors'"),
        (["view", "t.arch", "-o", "t.arch"], "-o 't.arch' is the same file"),
        (["view", "t.arch", "--bitops", "table1", "--quant", "q.quant", "-o", "q.quant"],
         "the same file as --quant"),
        (["sweep", "t.arch", "--grid", "classes=[2, 3]", "-o", "t.arch"], "-o 't.arch'"),
        (["sweep", "t.arch", "--grid", "classes=[2, 3]", "--plot", "t.arch"], "--plot"),
    ]
    (work / "q.quant").write_text("default weight_bits=8 act_bits=8\n")
    keep.append(work / "q.quant")
    for argv, message in cases:
        refused(capsys, argv, message, keep)


def test_output_folders_are_checked_before_the_work(work, capsys):
    pytest.importorskip("torch")
    (work / "taken").write_text("mine")
    (work / "run").mkdir()
    refused(capsys, ["inspect", "run", "--se-activations", "--data", "nowhere", "--out",
                     "taken"], ["--out 'taken'", "not a folder"], [work / "taken"])


def test_plot_format_follows_the_extension(work, capsys):
    pytest.importorskip("matplotlib")
    refused(capsys, ["sweep", "t.arch", "--grid", "classes=[2, 3]", "--plot", "p.jpeg"],
            ["--plot 'p.jpeg'", ".png"])
    assert not (work / "p.jpeg").exists()
    rc, _, err = cli(capsys, "sweep", "t.arch", "--grid", "classes=[2, 3]", "--plot", "p.svg")
    assert rc == 0, err
    assert b"<svg" in (work / "p.svg").read_bytes()[:400]


# ---- weights files (build --backend onnx --weights, a run's model.safetensors) ---------------
WEIGHTS_CASES = {
    "empty": (b"", "too short"),
    "short_header": (struct.pack("<Q", 1 << 40) + b"{}", "header claims"),
    "not_json": (struct.pack("<Q", 4) + b"\xff\xfe\x00\x01", "header is not JSON"),
    "header_list": (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    "truncated": (safetensors_bytes({"conv.weight": np.ones((4, 3))})[:-8], "truncated"),
    "bf16": (safetensors_bytes({"conv.weight": np.ones(4)}, "BF16"), "dtype BF16"),
    "bad_shape": (safetensors_bytes({"conv.weight": np.ones(4)}).replace(b"[4]", b"[5]"),
                  "shape (5,)"),
    "negative_size": (safetensors_bytes({"conv.weight": np.ones(4)}).replace(b"[4]", b"[-4"
                                                                             b"]")[:-1],
                      "not a safetensors file"),
    "nan": (safetensors_bytes({"conv.weight": np.full(4, np.nan)}), "tensor 'conv.weight'"),
    "inf": (safetensors_bytes({"fc.bias": np.array([1.0, np.inf])}), "tensor 'fc.bias'"),
}


@pytest.mark.parametrize("case", sorted(WEIGHTS_CASES))
def test_bad_weights_file_for_onnx(work, capsys, case):
    pytest.importorskip("onnx")
    data, message = WEIGHTS_CASES[case]
    (work / "w.safetensors").write_bytes(data)
    refused(capsys, ["build", "t.arch", "--backend", "onnx", "--weights", "w.safetensors", "-o",
                     "m.onnx"], ["w.safetensors", message], [work / "w.safetensors"])
    assert not (work / "m.onnx").exists()


def test_weights_that_are_not_regular_files_are_never_opened(work, capsys):
    pytest.importorskip("onnx")
    os.mkfifo(work / "fifo.safetensors")
    (work / "dir.safetensors").mkdir()
    for name in ("fifo.safetensors", "dir.safetensors"):   # a FIFO would block in open()
        refused(capsys, ["build", "t.arch", "--backend", "onnx", "--weights", name, "-o",
                         "m.onnx"], [name, "not a regular file"], [work / name], seconds=5)


def _run_folder(work, weights: bytes) -> str:
    """A run folder as archc train writes it, for t.arch (inspect reads it)."""
    net = build_net(load_program(str(work / "t.arch")), {})
    run = work / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({
        "network": "T", "file": str(work / "t.arch"), "backend": "torch",
        "params": {"classes": 2, "note": "plain"}, "param_count": analyze(net).totals["params"],
        "recipe": {}, "data": {}}))
    (run / "summary.json").write_text(json.dumps({"best_test_acc": 50, "last_test_acc": 50}))
    (run / "model.safetensors").write_bytes(weights)
    return "run"


@pytest.mark.parametrize("case", ["empty", "truncated", "bf16", "nan"])
def test_bad_model_weights_of_a_run(work, capsys, case):
    pytest.importorskip("torch")
    data, message = WEIGHTS_CASES[case]
    run = _run_folder(work, data)
    refused(capsys, ["inspect", run, "--se-activations", "--data", "nowhere"],
            ["model.safetensors", message], [work / run / "model.safetensors"])
    assert sorted(os.listdir(work / run)) == ["model.safetensors", "run.json", "summary.json"]


# ---- run folders and compression folders (archc compress) ------------------------------------
def _compress(*extra):
    return ["compress", "sensitivity", "t.arch", "--from", "run", "--data", "nowhere", "--out",
            "c", *extra]


RUN_JSON_CASES = {
    "recipe_string": ({"network": "T", "params": {}, "recipe": "fast", "data": {}},
                      "field 'recipe' must be a JSON object, got a string"),
    "data_string": ({"network": "T", "params": {}, "recipe": {}, "data": "cifar"},
                    "field 'data' must be a JSON object"),
    "params_list": ({"network": "T", "params": [1], "recipe": {}, "data": {}},
                    "field 'params'"),
    "a_list": ([1, 2], "expected a JSON object, got a JSON list"),
    "nan": ('{"network": NaN}', "NaN is not a JSON number"),
    "recipe_field_string": ({"network": "T", "params": {}, "recipe": {"epochs": "5"},
                             "data": {}}, "recipe: --epochs must be a whole number, not 5"),
    "not_utf8": (b'{"network": "\xff"}', "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(RUN_JSON_CASES))
def test_bad_run_json_for_compress(work, capsys, case):
    pytest.importorskip("jax")
    content, message = RUN_JSON_CASES[case]
    _run_folder(work, b"")
    raw = content if isinstance(content, (str, bytes)) else json.dumps(content)
    (work / "run" / "run.json").write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    refused(capsys, _compress(), ["run.json", message], [work / "run" / "run.json"])
    assert not (work / "c").exists()


FOLDER_CASES = {
    "compress_json_list": ("compress.json", "[]", "expected a JSON object, got a JSON list"),
    "compress_json_settings": ("compress.json", '{"settings": 3}', "field 'settings'"),
    "step_json_list": ("sensitivity/step.json", "[]", "expected a JSON object"),
    "step_json_settings_string": ("sensitivity/step.json", '{"settings": "x"}',
                                  "field 'settings' must be a JSON object, got a string"),
    "step_json_fractions_string": ("sensitivity/step.json",
                                   '{"settings": {"fractions": "0.5"}}', "--fractions must be"),
}


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_bad_compression_folder(work, capsys, case):
    pytest.importorskip("jax")
    name, text, message = FOLDER_CASES[case]
    path = work / "c" / name
    path.parent.mkdir(parents=True)
    path.write_text(text)
    refused(capsys, _compress(), [os.path.basename(name), message], [path])


@pytest.mark.parametrize("argv,message", [
    (["--fractions", "0.1:0.9:1e-9"], "more than the 200 allowed"),
    (["--fractions", "0.1:inf:0.1"], "list of finite numbers"),
    (["--fractions", "nan,0.5"], "list of finite numbers"),
    (["--fractions", ",".join(["0.5"] * 5000)], "more than the 200 allowed"),
    (["--bins", "20000000"], "--bins 20000000 is more than 16384"),
    (["--bins", "-1"], "--bins -1 is too few"),
    (["--finetune-epochs", "1000000000"], "--finetune-epochs must be from 1 to 100000"),
    (["--qat-lr", "inf"], "--qat-lr must be positive"),
])
def test_numeric_options_are_bounded(work, capsys, argv, message):
    pytest.importorskip("jax")
    refused(capsys, _compress(*argv), message, seconds=10)
    assert not (work / "c").exists()


def test_compress_out_that_is_a_file(work, capsys):
    pytest.importorskip("jax")
    (work / "c").write_text("mine")
    refused(capsys, _compress(), ["--out 'c'", "not a folder"], [work / "c"])


# ---- sweep --runs --------------------------------------------------------------------------
@pytest.mark.parametrize("best,message", [
    ("NaN", "NaN is not a JSON number"), ("1e308", "between 0 and 100"),
    ("-1", "between 0 and 100"), ('"80"', "must be a number, got a string"),
])
def test_sweep_runs_with_bad_accuracy(work, capsys, best, message):
    run = work / "runs" / "r"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"network": "T", "params": {"classes": 2}}')
    (run / "summary.json").write_text(f'{{"best_test_acc": {best}, "last_test_acc": 50}}')
    refused(capsys, ["sweep", "t.arch", "--grid", "classes=[2, 3]", "--runs", "runs",
                     "--plot", "p.png"], ["summary.json", message], [run / "summary.json"])
    assert not (work / "p.png").exists()


def test_sweep_runs_with_a_string_params(work, capsys):
    run = work / "runs" / "r"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"network": "T", "params": "classes=2"}')
    (run / "summary.json").write_text('{"best_test_acc": 50, "last_test_acc": 50}')
    refused(capsys, ["sweep", "t.arch", "--grid", "classes=[2, 3]", "--runs", "runs"],
            ["run.json", "field 'params' must be a JSON object"])


# ---- view ------------------------------------------------------------------------------------
def test_view_data_cannot_break_the_page(work, capsys):
    hostile = '<!--<script></script><b>&amp;'
    (work / "t.arch").write_text(TINY.replace('"plain"', json.dumps(hostile)))
    rc, _, err = cli(capsys, "view", "t.arch", "-o", "v.html")
    assert rc == 0, err
    page = (work / "v.html").read_text()
    data = re.search(r'<script id="archc-data" type="application/json">(.*?)</script>', page,
                     re.S).group(1)
    assert not set("<>&") & set(data)
    assert hostile in json.dumps(json.loads(data), ensure_ascii=False)
    assert page.count("<script") == page.count("</script>")


# ---- multi-host options ----------------------------------------------------------------------
@pytest.mark.parametrize("value", ["::::", "garbage", "host:0", "host:99999", "[zz]:80",
                                   "a b:80"])
def test_bad_coordinator_is_refused_before_jax(work, capsys, value):
    pytest.importorskip("jax")
    refused(capsys, ["train", "t.arch", "--data", "nowhere", "--coordinator", value,
                     "--num-processes", "2", "--process-id", "0", "--out", "r"],
            "--coordinator", seconds=5)


def test_bad_coordinator_from_the_environment(work, capsys, monkeypatch):
    pytest.importorskip("jax")
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "::::")
    refused(capsys, ["train", "t.arch", "--data", "nowhere", "--out", "r"],
            "$JAX_COORDINATOR_ADDRESS", seconds=5)


# ---- data-set index files (Tiny ImageNet) ----------------------------------------------------
def _tiny_imagenet(work, wnids: bytes, annotations: bytes):
    Image = pytest.importorskip("PIL.Image")
    root = work / "tiny"
    img = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    for c in ("n01", "n02"):
        (root / "train" / c / "images").mkdir(parents=True)
        img.save(root / "train" / c / "images" / f"{c}_0.png")
    (root / "val" / "images").mkdir(parents=True)
    img.save(root / "val" / "images" / "v0.png")
    (root / "wnids.txt").write_bytes(wnids)
    (root / "val" / "val_annotations.txt").write_bytes(annotations)
    return root


@pytest.mark.parametrize("wnids,annotations,named,message", [
    (b"n01\nn02\xff\n", b"v0.png\tn01\t0 0 8 8\n", "wnids.txt", "not UTF-8 text: byte ff at "
     "line 2, column 4"),
    (b"n01\nn02\n", b"v0.png\tn01\t0\n\xe9\n", "val_annotations.txt", "not UTF-8"),
    (b"n01\nn02\n", b"v0.png\tn01\t0\nv0.png\tn02\t0\n", "val_annotations.txt:2",
     "labelled 'n02' here and 'n01' on an earlier line"),
])
def test_tiny_imagenet_index_files(work, capsys, wnids, annotations, named, message):
    pytest.importorskip("torch")
    root = _tiny_imagenet(work, wnids, annotations)
    refused(capsys, ["train", "t.arch", "--data", root, "--backend", "torch", "--epochs", "1",
                     "--no-cache", "--no-progress", "--out", "r"], [named, message],
            [root / "wnids.txt", root / "val" / "val_annotations.txt"])


# ---- .quant files ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1_6", "\uff18", "8.0", "nan", "0x8", "+8"])
def test_quant_numbers_are_plain_digits(work, capsys, value):
    (work / "q.quant").write_text(f"default weight_bits=8 act_bits={value}\n")
    refused(capsys, ["analyze", "t.arch", "--bitops", "table1", "--quant", "q.quant"],
            ["q.quant:1", "'act_bits' must be a whole number of bits"], [work / "q.quant"])


# ---- smaller: extra tensors, Ctrl-C, import cycles -------------------------------------------
def test_compress_refuses_tensors_no_layer_has(work):
    from archc.backends.weights import torch_keys
    from archc.compiler import ArchError
    from archc.compression.state import load_flat
    net = build_net(load_program(str(work / "t.arch")), {})
    arrays = {k: np.ones(2) for k in torch_keys(net)}
    (work / "w.safetensors").write_bytes(safetensors_bytes({**arrays, "extra.weight":
                                                            np.ones(2)}))
    with pytest.raises(ArchError, match=r"w.safetensors.*no layer of T has: extra.weight"):
        load_flat(net, str(work / "w.safetensors"))


def test_interrupted_compress_says_how_to_go_on(work, capsys, monkeypatch):
    pytest.importorskip("jax")
    from archc.compression import pipeline

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "compress", interrupted)
    rc, _, err = cli(capsys, *_compress())
    assert rc == 130 and "interrupted; finished steps are kept" in err, err


def test_import_cycles_are_loaded_once(work, capsys):
    """Documented as legal (docs/language.md: each file is loaded once, cycles are harmless)."""
    (work / "b.arch").write_text('import "c.arch"\nblock b(x: tensor) {\n return c(x)\n}\n')
    (work / "c.arch").write_text('import "b.arch"\nblock c(x: tensor) {\n return relu(x)\n}\n')
    (work / "a.arch").write_text('import "b.arch"\nnetwork A() {\n x = input(3, 8, 8)\n'
                                 " return b(x)\n}\n")
    rc, out, err = cli(capsys, "check", "a.arch", seconds=10)
    assert rc == 0 and out.startswith("ok: A"), err


# ---- training: the first non-finite loss stops the run ---------------------------------------
def _image_folder(work):
    pytest.importorskip("PIL.Image")
    random_image_folder(work)


def _train(*extra):
    return ["train", "t.arch", "--data", "data", "--backend", "torch", "--batch-size", "4",
            "--no-progress", "--no-cache", "--out", "r", *extra]


def test_a_diverging_learning_rate_stops_training(work, capsys):
    pytest.importorskip("torch")
    _image_folder(work)
    err = refused(capsys, _train("--epochs", "2", "--lr", "1e30"),
                  ["training diverged", "epoch 1", "learning rate 1e+30", "--lr"], seconds=60)
    assert not (work / "r" / "model.safetensors").exists()
    assert not (work / "r" / "summary.json").exists(), err


def test_divergence_keeps_the_last_good_checkpoint(work, capsys, monkeypatch):
    pytest.importorskip("torch")
    from archc.training import torch_loop
    _image_folder(work)
    begin, metrics = torch_loop.TorchLoop.begin_epoch, torch_loop.TorchLoop.train_metrics

    def begin_epoch(self, epoch):
        self.test_epoch = epoch
        return begin(self, epoch)

    def train_metrics(self):     # the loss of epoch 2 (steps 4-6) is NaN from its first step
        loss, correct, count = metrics(self)
        return (float("nan") if self.test_epoch == 2 else loss), correct, count
    with monkeypatch.context() as m:
        m.setattr(torch_loop.TorchLoop, "begin_epoch", begin_epoch)
        m.setattr(torch_loop.TorchLoop, "train_metrics", train_metrics)
        refused(capsys, _train("--epochs", "3"), ["training diverged", "in epoch 2, by step 6"],
                seconds=60)
    assert [e for e, _ in torch_loop.checkpoints(str(work / "r" / "checkpoints"))] == [1]
    rc, out, err = cli(capsys, *_train("--epochs", "3", "--resume"), seconds=60)
    assert rc == 0 and "resuming r after epoch 1 of 3" in out, err


def test_a_network_too_big_for_onnx_is_refused_before_allocating(work, capsys):
    pytest.importorskip("onnx")
    (work / "big.arch").write_text("network Big(n: int = 100000000) {\n x = input(3, 8, 8)\n"
                                   " x = flatten(x)\n return linear(x, n)\n}\n")
    refused(capsys, ["build", "big.arch", "--backend", "onnx", "-o", "m.onnx"],
            ["Big has 19,300,000,000 parameters", "2 GiB an ONNX file holds"], seconds=10)
    assert not (work / "m.onnx").exists()


def test_an_onnx_export_that_would_not_fit_in_memory_is_refused(work, capsys, monkeypatch):
    pytest.importorskip("onnx")
    from archc import _checks
    monkeypatch.setattr(_checks, "available_memory", lambda: 1000)
    refused(capsys, ["build", "t.arch", "--backend", "onnx", "-o", "m.onnx"],
            ["T has 122 parameters", "needs about 1,952 bytes of memory, more than the 1,000 "
             "available"], seconds=10)


# ---- the data cache: damaged is rebuilt, never read ------------------------------------------
def test_a_damaged_data_cache_is_ignored(work):
    from archc.training.cache import ARRAYS
    from archc.training.cache import load as _load_cache
    cache = work / "c"
    cache.mkdir()
    meta = {"source": "data", "classes": ["a", "b"]}
    for text in ("[]", '{"source": "data", "classes": "ab"}', "{NaN"):
        (cache / "meta.json").write_text(text)
        assert _load_cache(str(cache), meta) is None
    (cache / "meta.json").write_text(json.dumps(meta))
    for a in ARRAYS:
        os.mkfifo(cache / f"{a}.npy")   # would block np.load
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(5)
    try:
        assert _load_cache(str(cache), meta) is None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---- fuzz: .quant files and run folders ------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=20, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def ends_cleanly(capsys, argv):
    """exit 0 or 2, no traceback: whatever the files hold."""
    rc, _, err = cli(capsys, *argv, seconds=20)
    assert rc in (0, 2), (rc, err)


@FUZZ
@given(key=st.sampled_from(["weight_bits", "act_bits", "acc_bits", "bias_bits", "sparsity"]),
       value=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1,
                     max_size=6))
def test_fuzz_quant_values(work, capsys, key, value):
    value = "".join(c for c in value if not c.isspace() and c != "#") or "x"
    (work / "q.quant").write_text(f"default {key}={value}\n", encoding="utf-8")
    ends_cleanly(capsys, ["analyze", "t.arch", "--bitops", "table1", "--quant", "q.quant"])


@FUZZ
@given(run=st.dictionaries(st.sampled_from(["network", "params", "recipe", "data", "file"]),
                           JSON, max_size=5), summary=JSON)
def test_fuzz_run_folders_for_sweep(work, capsys, run, summary):
    folder = work / "runs" / "r"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(run))
    (folder / "summary.json").write_text(json.dumps(summary))
    ends_cleanly(capsys, ["sweep", "t.arch", "--grid", "classes=[2, 3]", "--runs", "runs"])


@FUZZ
@given(marker=JSON, step=JSON)
def test_fuzz_compression_folders(work, capsys, marker, step):
    pytest.importorskip("jax")
    (work / "c" / "sensitivity").mkdir(parents=True, exist_ok=True)
    (work / "c" / "compress.json").write_text(json.dumps(marker))
    (work / "c" / "sensitivity" / "step.json").write_text(json.dumps(step))
    ends_cleanly(capsys, _compress())


def test_cifar100_class_names_must_be_utf8():
    from archc.compiler import ArchError
    from archc.training.cifar100 import NAMES, class_names
    names = ("\n".join(f"c{i}" for i in range(99)) + "\ncaf\xe9\n").encode("latin-1")
    with pytest.raises(ArchError, match=f"{NAMES['fine']} is not UTF-8 text: byte e9 at line "
                                        "100, column 4"):
        class_names({NAMES["fine"]: names}, coarse=False)
    assert class_names({NAMES["fine"]: names.replace(b"\xe9", b"e")}, False)[-1] == "cafe"


def test_train_seed_range_and_a_damaged_recipe_on_resume(work, capsys):
    pytest.importorskip("torch")
    refused(capsys, _train("--seed", str(10**20)), "--seed must be from 0 to 2147483647")
    (work / "r").mkdir()
    (work / "r" / "run.json").write_text('{"network": "T", "params": {}, "recipe": '
                                         '{"batch_size": "4"}, "data": {}}')
    refused(capsys, _train("--resume"), ["r/run.json: recipe: --batch-size must be a whole "
                                         "number, not 4"], [work / "r" / "run.json"])
