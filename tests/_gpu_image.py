"""The lent GPU machine's Python, imitated on the CPU: every package that archc's extras need
(pyproject.toml) and the machine's image does not have (bench/gpu_image_packages.txt) is made
unimportable in a subprocess, so that a missing import on the GPU path fails here first.

blocked() says which import names go; image_env() is the environment of a subprocess where they
are gone: a sitecustomize.py, first on PYTHONPATH, hides them from Python's module finders (an
import fails with "No module named 'grain'", importlib.util.find_spec gives None, as when the
package is not installed). A directory in `allowed` (the script's own copy of a wheel it
carries, such as lark's) still provides what it holds.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_LIST = os.path.join(ROOT, "bench", "gpu_image_packages.txt")

SITECUSTOMIZE = '''\
"""Written by tests/_gpu_image.py: the packages the GPU image lacks are not importable."""
import os
import sys

_BLOCKED = frozenset(os.environ["ARCHC_IMAGE_BLOCKED"].split(","))
_ALLOWED = tuple(os.path.abspath(p) + os.sep
                 for p in os.environ.get("ARCHC_IMAGE_ALLOWED", "").split(os.pathsep) if p)


def _allowed(spec) -> bool:
    where = [p for p in [*(spec.submodule_search_locations or []), spec.origin] if p]
    return bool(_ALLOWED) and all(os.path.abspath(p).startswith(_ALLOWED) for p in where)


class _Blind:
    """One of Python's module finders, blind to the blocked top-level packages (outside the
    allowed folders)."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        spec = self.finder.find_spec(name, path, target)
        if spec is not None and name.partition(".")[0] in _BLOCKED and not _allowed(spec):
            return None
        return spec

    def __getattr__(self, attr):
        return getattr(self.finder, attr)


sys.meta_path[:] = [_Blind(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
for _name in list(sys.modules):  # imported before this file ran (by a .pth file)
    if _name.partition(".")[0] in _BLOCKED:
        del sys.modules[_name]
'''


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages(path: str = IMAGE_LIST) -> set[str]:
    """The distribution names (normalised) that the GPU image holds."""
    with open(path, encoding="utf-8") as f:
        return {_norm(line.split()[0]) for line in f if line.strip() and not line.startswith("#")}


def required_distributions() -> set[str]:
    """Every distribution that archc's dependencies and extras name (normalised)."""
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    names = {_norm(re.match(r"[A-Za-z0-9._-]+", r.strip()).group()) for r in reqs}
    return names - {_norm(project["name"])}  # archc[...] names archc's own extras


def blocked(archc: bool = False) -> dict[str, str]:
    """{import name: distribution} of every package archc needs that the image lacks (import
    names from the installed distributions' metadata); archc=True: archc's own installation
    too (the image has none: the script lays archc out itself)."""
    lacking = required_distributions() - image_packages() | ({"archc"} if archc else set())
    out = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            if _norm(dist) in lacking and not module.startswith("_"):
                out[module] = _norm(dist)
    for dist in lacking - set(out.values()):  # not installed here: its name as the import name
        out[dist.replace("-", "_")] = dist
    return out


def image_env(folder, env=None, allowed=(), archc: bool = False) -> dict:
    """An environment for a subprocess in which blocked(archc) cannot be imported (except from
    the directories in `allowed`); `folder` receives the sitecustomize.py. This interpreter's
    directory comes first on PATH, so `python3` there is this Python."""
    env = dict(os.environ if env is None else env)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "sitecustomize.py"), "w", encoding="utf-8") as f:
        f.write(SITECUSTOMIZE)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(folder) + (os.pathsep + path if path else "")
    env["ARCHC_IMAGE_BLOCKED"] = ",".join(sorted(blocked(archc)))
    env["ARCHC_IMAGE_ALLOWED"] = os.pathsep.join(str(a) for a in allowed)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env
