"""`archc analyze` and `import archc` load neither torch nor jax (nor flax)."""
from __future__ import annotations

import subprocess
import sys

CHECK = ("import sys\n"
         "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'jax', 'flax', 'jaxlib'))\n"
         "assert not bad, bad\n")


def _run(code: str):
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def test_analyze_imports_no_framework():
    p = _run("import contextlib, io\n"
             "from archc._cli import main\n"
             "out = io.StringIO()\n"
             "with contextlib.redirect_stdout(out):\n"
             "    rc = main(['analyze', 'se_sqnxt', '-D', 'stages=[1,2,8,1]', '--format', 'json'])\n"
             "assert rc == 0, rc\n"
             "assert len(out.getvalue()) > 100\n" + CHECK)
    assert p.stderr == ""


def test_check_imports_no_framework():
    _run("from archc._cli import main\nassert main(['check', 'se_sqnxt']) == 0\n" + CHECK)


def test_import_archc_imports_no_framework():
    _run("import archc\nimport archc.compiler\n" + CHECK)


def test_public_api_names():
    """Every name in archc.__all__ resolves; none shadows a builtin; the weight exchange is
    exported (lazily: `import archc` needs no numpy)."""
    import builtins

    import archc
    for name in archc.__all__:
        assert getattr(archc, name) is not None, name
    assert not set(archc.__all__) & set(dir(builtins))
    assert archc.weights.save and archc.weights.load and archc.weights.load_into_jax
    _run("import sys\nimport archc\nassert 'numpy' not in sys.modules\n")


def _imported_names(folder: str) -> dict:
    """Every module name imported (absolute, or relative resolved) by each .py in `folder`."""
    import ast
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    found = {}
    for path in sorted((root / folder).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: inside the same package, archc.<folder>
                    names.add(f"archc.{folder}." + (node.module or ""))
                else:
                    names.add(node.module)
                    names |= {f"{node.module}.{a.name}" for a in node.names}
        found[path.name] = names
    return found


def test_compiler_imports_no_later_stage():
    """compiler/ is parse -> elaborate -> IR -> analysis: it imports nothing of the backends,
    training, compression or presentation, and no plotting or framework library."""
    later = ("archc.backends", "archc.training", "archc.compression", "archc.presentation",
             "archc._cli", "matplotlib", "torch", "jax", "flax", "numpy")
    for name, modules in _imported_names("compiler").items():
        bad = sorted(m for m in modules if m.startswith(later))
        assert not bad, f"compiler/{name} imports {bad}"


def test_backends_hold_lowerings_only():
    """backends/ lowers and exchanges weights: it imports neither training, compression nor
    presentation (the ONNX backend's embedded analysis JSON is the one use of the report)."""
    allowed = {"_onnx_model.py": ("archc.presentation.report",)}
    for name, modules in _imported_names("backends").items():
        bad = sorted(m for m in modules
                     if m.startswith(("archc.training", "archc.compression", "archc.presentation"))
                     and not m.startswith(allowed.get(name, ("-",))))
        assert not bad, f"backends/{name} imports {bad}"

