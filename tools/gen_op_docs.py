"""Print the primitive-op table of docs/language.md from the op registry (compiler/ops.py).

    python tools/gen_op_docs.py            # Markdown to stdout
    python tools/gen_op_docs.py --check    # exit 1 if docs/language.md's table is stale

The table in docs/language.md sits between the markers `<!-- ops:begin -->` and
`<!-- ops:end -->`; regenerate it with this script whenever an op is added or changed.
"""
from __future__ import annotations

import sys
from pathlib import Path

from archc.compiler import ops
from archc.compiler._values import show

BEGIN, END = "<!-- ops:begin -->", "<!-- ops:end -->"


def _default(a: ops.Arg) -> str:
    if a.kind == "tensors":
        return "x1, x2, ... (or one list)"
    if a.default is ops.REQUIRED:
        return "required"
    if a.default is None:
        return "none" + (" (= kernel)" if a.name == "stride" else "")
    return show(a.default)


def _kind(a: ops.Arg) -> str:
    kind = {"pair": "int or [h, w]", "padding": 'int, [h, w], "same" or "tf_same"',
            "tensors": "tensors"}.get(a.kind, a.kind)
    if a.choices:
        kind += " (" + " \\| ".join(show(c) for c in a.choices) + ")"
    if a.minimum is not None:
        m = int(a.minimum) if float(a.minimum).is_integer() else a.minimum
        kind += f", >= {m}"
    return kind


def table() -> str:
    lines = [BEGIN, "", "| op | category | arguments (kind, default) | description |",
             "|---|---|---|---|"]
    for name, op in ops.REGISTRY.items():
        args = "<br>".join(f"`{a.name}`: {_kind(a)}, {_default(a)}" for a in op.args)
        lines.append(f"| `{name}` | {op.category} | {args} | {op.doc} |")
    lines += ["", END]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = table()
    if "--check" in argv:
        doc = (Path(__file__).resolve().parents[1] / "docs" / "language.md").read_text()
        current = doc[doc.index(BEGIN): doc.index(END) + len(END)]
        if current != text:
            print("docs/language.md: the op table is stale; run python tools/gen_op_docs.py",
                  file=sys.stderr)
            return 1
        return 0
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
