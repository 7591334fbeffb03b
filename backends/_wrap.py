"""Line wrapping of generated source: `wrap` (an assignment or call within WIDTH columns) and
`wrap_def` (a `def` line). Used by backends/_source.py for every statement it writes."""
from __future__ import annotations

WIDTH = 99   # longest generated line


def wrap(head: str, expr: str, indent: str, width: int = WIDTH, trail: str = "") -> list:
    """`head + expr + trail` in lines of at most `width` columns. A call that does not fit
    continues its arguments aligned with its opening parenthesis, filling each line; named
    calls (a sequence's blocks) go one per line; a call whose only argument is a call hugs
    it (`nn.Sequential(OrderedDict(`). Arguments that still do not fit are wrapped in turn."""
    line = f"{indent}{head}{expr}{trail}"
    if len(line) <= width or not expr.endswith(")") or "(" not in expr:
        return [line]
    fn, args = expr.split("(", 1)
    parts = _split_args(args[:-1])
    inner = indent + "    "
    if len(parts) == 1 and _is_call(parts[0]):
        g, gargs = parts[0].split("(", 1)
        inside = _split_args(gargs[:-1])
        return ([f"{indent}{head}{fn}({g}("] + [x for p in inside for x in _arg(p, inner, width)]
                + [f"{indent})){trail}"])
    if len(parts) > 1 and all("=" in p.split("(", 1)[0] and _is_call(p.split("=", 1)[1])
                              for p in parts):
        return ([f"{indent}{head}{fn}("] + [x for p in parts for x in _arg(p, inner, width)]
                + [f"{indent}){trail}"])
    return _fill(f"{indent}{head}{fn}(", parts, ")" + trail, width)


def _is_call(text: str) -> bool:
    return text.endswith(")") and "(" in text and not text.startswith(("(", "["))


def _arg(part: str, indent: str, width: int) -> list:
    """One argument on lines of its own, ending with a comma."""
    key, _, value = part.partition("=") if "=" in part.split("(", 1)[0] else ("", "", part)
    return wrap(f"{key}=" if key else "", value, indent, width, trail=",")


def _fill(opening: str, parts: list, closing: str, width: int) -> list:
    """Arguments after `opening`, continued under its parenthesis, as many per line as fit;
    an argument too long for a line of its own is wrapped in turn."""
    pad = " " * len(opening)
    if len(pad) > width // 2:   # too deep: a hanging indent instead
        pad = " " * (len(opening) - len(opening.lstrip()) + 4)
        lines, cur = [opening.rstrip()], pad
    else:
        lines, cur = [], opening
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        piece = p + (", " if not last else closing)
        if cur.strip() and cur != opening and len(cur.rstrip() + " " + piece.rstrip()) > width:
            lines.append(cur.rstrip())
            cur = pad
        if len(cur + piece.rstrip()) > width and _is_call(p.partition("=")[2] or p):
            key, _, value = p.partition("=") if "=" in p.split("(", 1)[0] else ("", "", p)
            sub = wrap((cur.strip() and cur[len(pad):] or "") + (f"{key}=" if key else ""),
                       value, pad, width, trail="," if not last else closing)
            lines += sub
            cur = pad
            if last:
                return lines
            continue
        cur += piece
    lines.append(cur.rstrip())
    return lines


def wrap_def(name: str, args: str, indent: str, width: int = WIDTH) -> list:
    """`def name(args):` within `width` columns."""
    return _fill(f"{indent}def {name}(", _split_args(args), "):", width)


def _split_args(text: str) -> list:
    parts, depth, cur, quote = [], 0, "", None
    for ch in text:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts
