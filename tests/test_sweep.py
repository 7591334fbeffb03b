"""`archc sweep`: grid parsing and its errors, the cartesian product, the outputs, the Pareto
front, joined training runs and the plot."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time

import pytest

import archc
from archc._cli import main
from archc.compiler import ArchError, load_program
from archc.presentation.sweep import combinations, pareto_front, parse_grid, run
from archc.presentation.sweep_report import attach_runs, load_runs


def cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


# ---- grids -----------------------------------------------------------------------------------
def test_grid_values_are_list_literals():
    g = parse_grid("stages=[[1, 2, 4, 1], [1,2,8,1]]")
    assert g.name == "stages" and g.values == [(1, 2, 4, 1), (1, 2, 8, 1)]
    assert parse_grid(" width = [0.5, -1, 2] ").values == [0.5, -1, 2]
    assert parse_grid('act=["relu", "elu"]').values == ["relu", "elu"]
    g = parse_grid("width=[0.5, 1.0]")
    assert [(s.column, s.end_column) for s in g.spans] == [(15, 18), (20, 23)]


@pytest.mark.parametrize("text, message, column", [
    ("width", "--grid expects name=[values], got 'width'", 8),
    ("2w=[1]", "'2w' is not a parameter name", 8),
    ("width=", "--grid width= has no values", 13),
    ("width=0.5", "the values must be a [list], got '0.5'", 14),
    ("width=[]", "the list of values is empty", 14),
    ("width=[1,", "'[' is never closed", 14),
    ("width=[0.5, x]", "a -D value must be a literal", 20),
])
def test_grid_errors_point_into_the_option(text, message, column):
    with pytest.raises(ArchError) as e:
        parse_grid(text)
    assert message in e.value.message
    assert e.value.span.file == "<--grid>" and e.value.span.column == column
    assert e.value.source.startswith("--grid ")


def test_cli_grid_errors_exit_2_without_traceback(capsys):
    for args, message in [
        (["--grid", "width=0.5"], "<--grid>:1:14: error: --grid width: the values must be a "
                                  "[list]"),
        (["--grid", "widht=[1, 2]"], "<--grid>:1:8: error: network 'SESqueezeNext' has no "
                                     "parameter 'widht'"),
        (["--grid", "width=[1.0]", "--grid", "width=[2.0]"], "--grid width is given twice"),
        (["--grid", "width=[1.0]", "-D", "width=2.0"], "width is both swept (--grid) and fixed"),
        (["--grid", 'width=[0.5, "a"]'], "combination 2 of 2 (width=\"a\"): parameter 'width': "
                                         "expected float"),
        (["--grid", "stages=[[1, 1, 1]]"], "combination 1 of 1 (stages=[1, 1, 1]): assertion "
                                           "failed"),
        ([], "needs at least one --grid"),
        (["--grid", "width=[1.0]", "--plot-y", "acc"], "needs --runs"),
    ]:
        code, out, err = cli(["sweep", "se_sqnxt", *args], capsys)
        assert code == 2, args
        assert message in err, err
        assert "Traceback" not in err and out == ""


def test_too_many_combinations():
    grids = [parse_grid(f"g{i}=[{', '.join(map(str, range(10)))}]") for i in range(5)]
    with pytest.raises(ArchError, match="100,000 combinations; the limit is 10,000"):
        combinations(grids, {})


# ---- the product and its costs ---------------------------------------------------------------
def test_product_order_and_costs_match_analyze():
    program = load_program("se_sqnxt")
    grids = [parse_grid("width=[0.5, 1.0, 2.0]"), parse_grid("stages=[[1,2,4,1],[1,2,8,1]]")]
    s = run(program, grids, {"dropout": 0.3})
    assert len(s.rows) == 6
    assert [tuple(r["values"].values()) for r in s.rows] == [
        (w, st) for w in (0.5, 1.0, 2.0) for st in ((1, 2, 4, 1), (1, 2, 8, 1))]
    for r in s.rows:
        t = archc.analyze("se_sqnxt", dropout=0.3, **r["values"]).totals
        assert (r["params"], r["macs"], r["peak_activations"]) == \
            (t["params"], t["macs"], t["peak_activations"])
        assert r["size_mb"] == t["params"] * 4 / 1e6
        assert r["network_params"]["dropout"] == 0.3
    assert s.rows[2]["params"] == 403_692      # SE-SqueezeNext-10-1.0x (docs/paper-tables.md)


def test_hundred_combinations_in_seconds():
    program = load_program("se_sqnxt")
    grids = [parse_grid("width=[" + ", ".join(f"{0.25 + 0.05 * i:.2f}" for i in range(25)) + "]"),
             parse_grid("stages=[[1,1,1,1], [1,2,4,1], [1,2,8,1], [2,2,16,1]]")]
    t0 = time.perf_counter()
    s = run(program, grids)
    seconds = time.perf_counter() - t0
    assert len(s.rows) == 100
    assert seconds < 20, seconds     # about 2 s on the 2-core CI machine (docs/sweep.md)


def test_outputs_csv_json_markdown(capsys):
    args = ["sweep", "se_sqnxt", "--grid", "width=[0.5, 1.0]", "--grid", "se_ratio=[8, 16]",
            "--bitops", "table1", "--quant", "int8"]
    code, out, _ = cli([*args, "--format", "csv"], capsys)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["width"], r["se_ratio"]) for r in rows] == [("0.5", "8"), ("0.5", "16"),
                                                          ("1.0", "8"), ("1.0", "16")]
    assert {"params", "macs", "size_mb", "peak_activations", "score", "storage_mb",
            "pareto"} <= set(rows[0])
    code, out, _ = cli([*args, "--format", "json"], capsys)
    data = json.loads(out)
    assert data["grid"] == {"width": [0.5, 1.0], "se_ratio": [8, 16]}
    assert [r["params"] for r in data["rows"]] == [int(r["params"]) for r in rows]
    assert data["pareto"]["x"] == "params" and data["pareto"]["y"] == "macs"
    assert all(0 < r["score"] < 1 for r in data["rows"])
    code, out, _ = cli([*args, "--format", "markdown"], capsys)
    assert out.count("\n| ") == 5 and "| width | se_ratio | params |" in out


# ---- the Pareto front -------------------------------------------------------------------------
def test_pareto_front_on_a_known_set():
    pts = [(1, 9), (2, 4), (3, 4), (4, 1), (5, 5), (2, 4), (6, 0.5), (None, 0), (7, 0.5)]
    #      front   front   (2,4) better  front  dominated  tie: front  front  no x  same y, more x
    assert pareto_front(pts) == [0, 1, 3, 5, 6]
    # accuracy: larger is better
    acc = [(1.0, 80.0), (2.0, 85.0), (3.0, 84.0), (4.0, 90.0), (0.5, 70.0), (4.0, 89.0)]
    assert pareto_front(acc, (True, False)) == [0, 1, 3, 4]
    assert pareto_front([]) == []


def test_front_marked_in_the_table(capsys):
    code, out, _ = cli(["sweep", "se_sqnxt", "--grid", "width=[0.5, 1.0]",
                        "--grid", "dropout=[0.1, 0.2]", "--format", "csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    # dropout has no parameters: both 0.5x rows tie on (params, MACs) and share the front
    assert [r["pareto"] for r in rows] == ["1", "1", "0", "0"]


# ---- runs and the plot -----------------------------------------------------------------------
def _fake_run(folder, params: dict, best: float, last: float, network="SESqueezeNext"):
    """A run folder as archc train writes it (run_dir.py): only the fields sweep reads."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"network": network, "params": params}))
    (folder / "summary.json").write_text(json.dumps({"best_test_acc": best,
                                                     "last_test_acc": last}))


def test_runs_join_their_combination(tmp_path, capsys):
    base = dict(archc.load("se_sqnxt").params)
    base = {k: list(v) if isinstance(v, tuple) else v for k, v in base.items()}
    _fake_run(tmp_path / "a" / "seed0", {**base, "width": 0.5}, 80.0, 79.0)
    _fake_run(tmp_path / "a" / "seed1", {**base, "width": 0.5}, 82.0, 81.0)
    _fake_run(tmp_path / "b", {**base, "width": 1.0}, 90.0, 89.5)
    _fake_run(tmp_path / "c", {**base, "width": 3.0}, 95.0, 95.0)      # not in the grid
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "run.json").write_text("{}")
    runs = load_runs(str(tmp_path))
    assert len(runs) == 4
    program = load_program("se_sqnxt")
    s = run(program, [parse_grid("width=[0.5, 1.0, 2.0]")])
    left = attach_runs(s, runs, "best")
    assert [r["acc"] for r in s.rows] == [81.0, 90.0, None]
    assert [r["runs"] for r in s.rows] == [2, 1, 0]
    assert [r["path"] for r in left] == [str(tmp_path / "c")]
    png = tmp_path / "acc.png"
    code, out, err = cli(["sweep", "se_sqnxt", "--grid", "width=[0.5, 1.0, 2.0]", "--runs",
                          str(tmp_path), "--acc", "last", "--plot", str(png), "--format", "json"],
                         capsys)
    assert code == 0, err
    data = json.loads(out)
    assert [r["acc"] for r in data["rows"]] == [80.0, 89.5, None]
    assert data["pareto"] == {"x": "size_mb", "y": "acc", "rows": [0, 1]}
    assert "unfinished has not finished" in err and "matches no combination" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_runs_folder(tmp_path, capsys):
    code, _, err = cli(["sweep", "se_sqnxt", "--grid", "width=[1.0]", "--runs",
                        str(tmp_path)], capsys)
    assert code == 2 and "no finished archc train run" in err
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text("{}")
    (tmp_path / "r" / "summary.json").write_text("{not json")
    code, _, err = cli(["sweep", "se_sqnxt", "--grid", "width=[1.0]", "--runs",
                        str(tmp_path)], capsys)
    assert code == 2 and "summary.json:1:2: not valid JSON" in err


def test_plot_and_output_file(tmp_path):
    png, table = tmp_path / "pareto.png", tmp_path / "t.md"
    proc = subprocess.run([sys.executable, "-m", "archc", "sweep", "sqnxt", "--grid",
                           "width=[0.5, 1.0, 2.0]", "--grid", "stages=[[1,1,1,1],[2,2,2,2]]",
                           "--plot", str(png), "--format", "markdown", "-o", str(table)],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert table.read_text().count("\n| ") == 7 and proc.stdout == ""
    assert "6 combinations in" in proc.stderr


def test_sweep_and_view_import_no_framework(tmp_path):
    """Like `archc analyze`, sweep and view stay on the compiler side: no torch, jax or flax."""
    code = ("import sys, contextlib, io\n"
            "from archc._cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    assert main(['sweep', 'se_sqnxt', '--grid', 'width=[0.5, 1.0]']) == 0\n"
            f"    assert main(['view', 'se_sqnxt', '-o', {str(tmp_path / 'v.html')!r}]) == 0\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'jax', 'flax'))\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
