"""No dangling references in the documentation: every repository file that README.md and
docs/*.md cite exists, and so does every docs/<name>.md that any file of the repository cites.

What counts as a reference (the rule):
- In README.md and docs/*.md, a backticked span (`compiler/ops.py`) or the target of a
  Markdown link ([text](costs.md#anchor)).
- A backticked span is a repository path when its first component is one of the
  repository's top-level folders (compiler/, backends/, docs/, tests/, tools/, .ci/, ...:
  the folders at the root, less those .gitignore names, such as runs/ and data/) or it is a
  file at the root (pyproject.toml, README.md). It must then exist: a path as a file or
  folder; a glob (`archs/*.arch`) must match something; `tests/x.py::test_name` must also
  define a test of that name in the file (the name may be a glob:
  `tests/test_train_safety.py::test_*compilation_cache*`). A path with a placeholder
  (`<...>`, `{a,b}`, `|`) is a pattern, not a file, and is not checked.
- A dotted name whose first part is one of the repository's Python packages
  (`compiler.sweep.pareto_front`, `presentation.report`; `archc.<package>...` for the
  packages pyproject.toml maps under archc, e.g. `archc.compiler.bitops.size_table()`) names
  a module and, after it, something the module defines or imports. (Other `archc.*` names
  are the public API's attributes or the metadata keys of a saved file, and are not
  checked here.)
- A bare file name (`ops.py`, `sqnxt.arch`, `view.js`) names a file somewhere in the
  repository when its suffix is that of the repository's source (.py, .arch, .lark, .js,
  .css, .html): some file of that name must exist. Other bare names (`run.json`,
  `report.md`, `model.quant`) are files a command writes or a user supplies.
- A Markdown link that is not a URL is relative to the document; its file must exist, and
  its #anchor must be one of the target's headings (as GitHub makes anchors of them).
- Not references: anything else -- run folders and what commands write (`runs/...`,
  `RUN/run.json`, `sensitivity/curves.csv`), a user's data layout (`train/<class>/*`),
  paths outside the repository (`~/.cache/archc`, `/work/shared/...`, `../shared/...`).
- In every tracked text file (code, comments, docstrings, .arch headers, docs), a cited
  `docs/<name>.md` must exist.
"""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCE_SUFFIXES = {".py", ".arch", ".lark", ".js", ".css", ".html"}
TEXT_SUFFIXES = SOURCE_SUFFIXES | {".md", ".toml", ".quant", ".tsv", ".txt", ".sh", ".json"}
SKIP_DIRS = {".git", "__pycache__"}


def _ignored() -> list[str]:
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return [ln.strip().strip("/") for ln in lines if ln.strip() and not ln.startswith("#")]


def _repo_folders() -> set[str]:
    ignored = _ignored()
    return {p.name for p in ROOT.iterdir()
            if p.is_dir() and p.name not in SKIP_DIRS
            and not any(fnmatch.fnmatch(p.name, pat) for pat in ignored)
            and (not p.name.startswith(".") or p.name == ".ci")}


def _repo_files() -> list[Path]:
    folders = _repo_folders()
    out = [p for p in ROOT.iterdir() if p.is_file()]
    ignored = _ignored()
    for folder in folders:
        for p in (ROOT / folder).rglob("*"):
            rel = p.relative_to(ROOT).parts
            if p.is_file() and not any(part in SKIP_DIRS or any(
                    fnmatch.fnmatch(part, pat) for pat in ignored) for part in rel):
                out.append(p)
    return out


FOLDERS = _repo_folders()
PACKAGES = {f for f in FOLDERS if (ROOT / f / "__init__.py").exists()}
FILES = _repo_files()
NAMES = {p.name for p in FILES}
TOP_FILES = {p.name for p in ROOT.iterdir() if p.is_file()}


def _spans(text: str) -> list[str]:
    """Backticked spans outside fenced code blocks (a fence shows commands, not citations)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.findall(r"`([^`\n]+)`", text)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {_slug(m) for m in re.findall(r"^#+\s+(.*)$", text, flags=re.M)}


def _test_names(path: Path) -> set[str]:
    return set(re.findall(r"^\s*def (test_\w+)", path.read_text(), flags=re.M))


def _defines(module: Path, name: str) -> bool:
    n = re.escape(name)
    return re.search(rf"^(?:(?:async )?def|class) {n}\b|^{n}\s*[:=]|"
                     rf"^(?:from \S+ )?import (?:.*[ ,(])?{n}\b", module.read_text(),
                     flags=re.M) is not None


def problems_of_dotted(span: str) -> str | None:
    """Why the dotted name `span` (`compiler.sweep.run`) names no module or attribute."""
    parts = span.removesuffix("()").split(".")
    if parts[0] == "archc" and len(parts) > 1 and parts[1] in PACKAGES - {"archc"}:
        parts = parts[1:]
    if parts[0] not in PACKAGES or parts[0] == "archc" or len(parts) < 2:
        return None
    where = ROOT / parts[0]
    for i, part in enumerate(parts[1:], 1):
        if (where / part).is_dir() and (where / part / "__init__.py").exists():
            where = where / part
        elif (where / f"{part}.py").exists():
            where = where / f"{part}.py"
            rest = parts[i + 1:]
            break
        else:
            module = where / "__init__.py"
            if _defines(module, part):
                return None
            return f"`{span}`: {module.relative_to(ROOT)} has no {part}"
    else:
        return None
    if rest and not _defines(where, rest[0]):
        return f"`{span}`: {where.relative_to(ROOT)} defines no {rest[0]}"
    return None


def problems_of_span(span: str) -> str | None:
    """Why the backticked `span` is a dangling reference, or None."""
    span = span.strip().rstrip(".,;:")
    if re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+(\(\))?", span) and \
            Path(span).suffix not in TEXT_SUFFIXES:
        return problems_of_dotted(span)
    if any(c in span for c in "<>{}|\"' ") or span.startswith(("-", "/", "~", "..", "$")):
        return None
    path, _, test = span.partition("::")
    first = path.split("/", 1)[0]
    if "/" in path and first in FOLDERS or path in TOP_FILES:
        matches = [Path(p) for p in ROOT.glob(path.rstrip("/"))] if any(
            c in path for c in "*?[") else [ROOT / path.rstrip("/")]
        matches = [m for m in matches if m.exists()]
        if not matches:
            return f"`{span}`: no such file or folder"
        if test:
            names = _test_names(matches[0])
            if not fnmatch.filter(names, test):
                return f"`{span}`: {path} defines no test {test}"
        return None
    if "/" not in path and Path(path).suffix in SOURCE_SUFFIXES:
        if "*" in path or "?" in path:
            return None if fnmatch.filter(NAMES, path) else f"`{span}`: no file matches"
        return None if path in NAMES else f"`{span}`: no file of that name in the repository"
    return None


def problems_of_link(doc: Path, target: str) -> str | None:
    if re.match(r"^[a-z]+:", target) or target.startswith("//"):
        return None    # a URL
    file, _, anchor = target.partition("#")
    dest = (doc.parent / file).resolve() if file else doc
    if not dest.exists():
        return f"link ({target}): no such file"
    if anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
        return f"link ({target}): {dest.name} has no heading with that anchor"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_cited_repository_file_exists(doc):
    text = doc.read_text()
    found = [problems_of_span(s) for s in _spans(text)]
    body = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    found += [problems_of_link(doc, t) for t in re.findall(r"\]\(([^)\s]+)\)", body)]
    assert not [p for p in found if p], "\n".join(sorted({p for p in found if p}))


def test_every_cited_doc_exists():
    missing = set()
    for path in FILES:
        if path.suffix not in TEXT_SUFFIXES or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for name in re.findall(r"\bdocs/([\w\-]+\.md)\b", text):
            if not (ROOT / "docs" / name).exists():
                missing.add(f"{path.relative_to(ROOT)}: docs/{name}")
    assert not missing, "\n".join(sorted(missing))


@pytest.mark.parametrize("span,dangling", [
    ("compiler/ops.py", False), ("compiler/no_such_module.py", True),
    ("archs/*.arch", False), ("archs/*.nothing", True), ("docs/", False),
    ("tests/test_doc_references.py::test_every_cited_doc_exists", False),
    ("tests/test_doc_references.py::test_*cited*", False),
    ("tests/test_doc_references.py::test_nothing", True),
    ("ops.py", False), ("no_such_module.py", True), ("pyproject.toml", False),
    ("runs/x/report.md", False), ("run.json", False), ("train/<class>/*", False),
    ("~/.cache/archc", False), ("/work/shared/seeds/x.txt", False),
    ("presentation.sweep.pareto_front", False), ("compiler.sweep.pareto_front", True),
    ("archc.compiler.bitops.size_table()", False), ("compiler.ops", False),
    ("compiler.ops.no_such_name", True), ("archc.weights", False), ("archc.compress.x", False),
])
def test_the_rule(span, dangling):
    """The rule itself: what is checked and what is not (a rule that flags nothing would
    pass the tests above as well)."""
    assert (problems_of_span(span) is not None) == dangling
