"""Lines of the generated modules, for every bundled network and both backends.

    python bench/codegen_lines.py                      # this checkout
    python bench/codegen_lines.py --before base-stop9  # and a git revision, side by side

The revision is exported with `git archive` into a temporary folder and laid out as the
package its pyproject.toml describes (archc/, archc/compiler, archc/backends, ...), then run
in a subprocess; nothing is installed. Prints a Markdown table (docs/backends.md holds one).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COUNT = """
import json, sys
import archc
from archc.compiler import bundled_networks
out = {}
for name in bundled_networks():
    out[name] = [len(archc.build_source(name, backend=b).splitlines()) for b in ("torch", "jax")]
print(json.dumps(out))
"""


def count(pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run([sys.executable, "-c", COUNT], capture_output=True, text=True,
                          env=env, cwd=pythonpath or ROOT, check=True)
    return json.loads(proc.stdout)


def export(rev: str, into: Path) -> str:
    """The revision's files laid out as an importable `archc` package; returns the path."""
    src = into / "src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    pkg = into / "pkg"
    # the revision's own package folders (pyproject.toml's [tool.setuptools.package-dir])
    dirs = tomllib.loads((src / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.copytree(src / dirs.pop("archc"), pkg / "archc")
    for name, folder in dirs.items():
        shutil.copytree(src / folder, pkg / "archc" / name.split(".", 1)[1])
    return str(pkg)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="REV", help="also count a git revision")
    args = ap.parse_args(argv)
    now = count(None)
    before = {}
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            before = count(export(args.before, Path(tmp)))
    head = "| network | torch | JAX |" if not before else \
        f"| network | torch before ({args.before}) | torch now | JAX before | JAX now |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for name in sorted(now):
        t, j = now[name]
        if before:
            bt, bj = before.get(name, ("-", "-"))
            print(f"| {name} | {bt} | {t} | {bj} | {j} |")
        else:
            print(f"| {name} | {t} | {j} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
