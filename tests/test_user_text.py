"""What a user reads names papers by their authors, never the project's internal names.

Internal names: the numbered source files the papers were read from ("seed 002", "the seeds'",
"002_68cf...txt", "../shared/seeds/"), issue numbers and branch names ("issue 14", "issue14"),
and paths of the machines archc was developed on (/work/, /root/). Searched: the help of
every command and subcommand, `archc list`, the installed package's .arch and .quant files
(their comments become `archc list` descriptions and generated docstrings), the string
literals of the installed package's Python code that are not docstrings (error messages,
hints, log lines, option help), a generated module of every bundled network, README.md and
docs/ (text and examples). Also: README.md's network table is `archc list`'s networks.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
from importlib import resources
from pathlib import Path

import pytest

import archc
from archc import _cli
from archc.compiler import bundled_networks

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(archc.__file__).resolve().parent

INTERNAL = re.compile(
    r"\bseeds? ?\d{3}\b"            # seed 002, seeds 000 and 001
    r"|\bseeds?'s?(?!\w)"           # the seeds', the seed's
    r"|\bseed papers?\b"
    r"|\bthe seeds?\b(?! and\b| of\b| in\b|\)|,|\.)"   # "the seed uses 1.3", not a random seed
    r"|\bissue ?\d+"                # issue 14, issue14 (a branch)
    r"|/work/|/root/|\.\./shared"   # the development machines' paths
    r"|\b\d{3}_[0-9a-f]{16}\b",     # 002_68cf32dd8b4fd706: a source file's name
    re.IGNORECASE)   # (a page cited but missing: tests/test_doc_references.py)


def _flat(text: str) -> str:
    """One line: a name split over lines ("seed\\n# 004") is still found."""
    return re.sub(r"\s*\n\s*(?:#+\s*)?", " ", text)


def _found(text: str) -> list[str]:
    flat = _flat(text)
    return [flat[max(0, m.start() - 40):m.end() + 20] for m in INTERNAL.finditer(flat)]


def test_the_pattern_finds_what_it_is_for():
    for bad in ("seed 002's pipeline", "(seed 003: 2000)", "the seeds' recipe", "seeds 000 and\n"
                "# 001", "branch issue14", "../shared/seeds/002_*.txt", "/work/runs-14/c2",
                "002_68cf32dd8b4fd706.txt", "the seed uses 1.3"):
        assert _found(bad), bad
    for fine in ("--seed 0", "the recipe's seed", "fixed by --seed", "random seed 7",
                 "Zeng et al.'s Table 1", "Chappa & El-Sharkawy, Table V",
                 "depend on the seed and the step", "drawn from (the seed, epoch)"):
        assert not _found(fine), fine


def _parsers(parser: argparse.ArgumentParser, name: str = "archc"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _parsers(p, f"{name} {sub}")


def test_cli_help_of_every_command():
    helps = {name: p.format_help() for name, p in _parsers(_cli.make_parser())}
    assert {"archc build", "archc train", "archc compress", "archc compress run",
            "archc sweep"} <= set(helps)
    bad = {name: _found(text) for name, text in helps.items() if _found(text)}
    assert not bad, bad


def _archc(*argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert _cli.main(list(argv)) == 0
    return out.getvalue()


def test_archc_list():
    assert not _found(_archc("list"))


def _bundled_files():
    root = resources.files("archc.archs")
    stack = [root]
    while stack:
        for item in stack.pop().iterdir():
            if item.is_dir():
                stack.append(item)
            elif item.name.endswith((".arch", ".quant")):
                yield item


def test_bundled_arch_and_quant_files():
    files = list(_bundled_files())
    assert len(files) >= len(bundled_networks())
    bad = {f.name: _found(f.read_text(encoding="utf-8")) for f in files}
    assert not {k: v for k, v in bad.items() if v}


def _string_literals(source: str):
    """The str constants of a module that are not docstrings (messages, help, log lines);
    adjacent literals ("a " "b") are one constant, as Python joins them."""
    tree = ast.parse(source)
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs:
            yield node.lineno, node.value


def test_messages_of_the_installed_code():
    files = sorted(PACKAGE.rglob("*.py"))
    for sub in ("compiler", "backends", "training", "compression", "presentation"):
        files += sorted(Path(resources.files(f"archc.{sub}")).rglob("*.py"))
    assert len(files) > 40
    bad = [f"{path.name}:{line}: {hit}" for path in files
           for line, text in _string_literals(path.read_text(encoding="utf-8"))
           for hit in _found(text)]
    assert not bad, bad


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_generated_modules(backend):
    bad = {name: _found(archc.build_source(name, backend=backend))
           for name in bundled_networks()}
    assert not {k: v for k, v in bad.items() if v}


def test_readme_and_docs():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
             *sorted((ROOT / "docs").rglob("*.py"))]
    assert len(pages) > 10
    bad = {str(p.relative_to(ROOT)): _found(p.read_text(encoding="utf-8")) for p in pages}
    assert not {k: v for k, v in bad.items() if v}


def test_readme_network_table_is_archc_list():
    """README.md's table of bundled networks names exactly the networks `archc list` prints."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("The bundled library", 1)[1].split("\n\n## ", 1)[0]
    in_readme = re.findall(r"^\| `([a-z0-9_]+)` \|", section, re.MULTILINE)
    listed = [line.split()[0] for line in _archc("list").splitlines()
              if line and not line.startswith(" ")]
    assert listed == bundled_networks()
    assert sorted(in_readme) == sorted(listed)
    assert len(in_readme) == len(set(in_readme))
