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
