"""The archc command line (docs/cli.md)."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

import archc
from archc._cli import main

SCHEMA_LAYER = {"name", "op", "inputs", "output", "kernel", "stride", "padding", "groups", "params",
                "param_tensors", "buffers", "macs", "flops", "elementwise_ops", "activations",
                "attrs", "source"}
SCHEMA_TOTALS = {"params", "buffers", "macs", "flops", "matmul_macs", "elementwise_ops",
                 "activations",
                 "peak_activations", "peak_activations_at", "layers", "precision_bits",
                 "size_bytes", "size_bytes_with_buffers"}


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_schema_and_hwc_order(capsys):
    code, out, _ = run(capsys, "analyze", "se_sqnxt", "--format", "json", "-D", "resolution=48")
    assert code == 0
    d = json.loads(out)
    assert set(d) == {"network", "file", "parameters", "input", "output", "outputs", "layers",
                      "totals"}
    assert d["input"] == [48, 48, 3] and d["output"] == [1, 1, 10]
    assert d["outputs"] == [{"name": None, "layer": "fc", "output": [1, 1, 10],
                             "params": d["totals"]["params"], "macs": d["totals"]["macs"]}]
    assert d["parameters"]["resolution"] == 48 and d["parameters"]["stages"] == [1, 2, 4, 1]
    assert set(d["totals"]) == SCHEMA_TOTALS
    for layer in d["layers"]:
        assert set(layer) == SCHEMA_LAYER
        assert layer["flops"] == 2 * layer["macs"]
    conv1 = d["layers"][0]
    assert conv1["name"] == "conv1" and conv1["inputs"] == [[48, 48, 3]] and conv1["output"] == [46, 46, 64]
    a = archc.analyze("se_sqnxt", resolution=48)
    assert d["totals"] == a.totals and len(d["layers"]) == a.totals["layers"]


def test_csv_markdown_table_and_only(capsys):
    code, out, _ = run(capsys, "analyze", "sqnxt", "--format", "csv", "--only", "conv,linear")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0][0] == "Layer" and rows[0][-2:] == ["Params", "MACs"]
    assert {r[1] for r in rows[1:]} == {"conv", "linear"}
    a = archc.analyze("sqnxt")
    assert sum(int(r[-2]) for r in rows[1:]) == a.totals["params"] - sum(
        lc.params for lc in a.layers if lc.op not in ("conv", "linear"))
    code, out, _ = run(capsys, "analyze", "sqnxt", "--format", "csv", "--no-fold")
    assert len(out.strip().splitlines()) == 1 + a.totals["layers"]
    code, out, _ = run(capsys, "analyze", "sqnxt", "--format", "markdown")
    assert out.startswith("**SqueezeNext(") and "| Layer | Op |" in out and f"{a.totals['macs']:,}" in out
    code, out, _ = run(capsys, "analyze", "sqnxt")
    assert code == 0 and "FLOPs = 2*MACs" in out


def test_check_and_list(capsys):
    code, out, _ = run(capsys, "check", "se_sqnxt")
    n = archc.load("se_sqnxt")
    assert code == 0 and out.strip() == f"ok: SESqueezeNext: {len(n.layers())} layers, output 1x1x10 (HxWxC)"
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in archc.bundled_networks():
        assert any(line.startswith(name + " ") for line in out.splitlines())


@pytest.mark.parametrize("argv,needle", [
    (["check", "nonexistent_net"], "no such file"),
    (["analyze", "se_sqnxt", "-D", "widht=2"], "no parameter 'widht'"),
    (["analyze", "se_sqnxt", "-D", "width=abc"], "literal"),
    (["analyze", "se_sqnxt", "--only", "convv"], "unknown op"),
    (["analyze", "se_sqnxt", "--bits", "0"], "--bits"),
])
def test_user_errors_exit_2_without_traceback(capsys, argv, needle):
    code, _, err = run(capsys, *argv)
    assert code == 2 and needle in err and "Traceback" not in err


def test_positioned_error_in_file(tmp_path, capsys):
    f = tmp_path / "bad.arch"
    f.write_text("network N() {\n x = input(3, 8, 8)\n return convv(x, 4, kernel=1)\n}\n")
    code, _, err = run(capsys, "check", str(f))
    assert code == 2 and "bad.arch:3:" in err and "did you mean 'conv'" in err and "^" in err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["analyze"])
    assert e.value.code == 2


def test_python_dash_m(tmp_path):
    r = subprocess.run([sys.executable, "-m", "archc", "check", "sqnxt"], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("ok: SqueezeNext:")
