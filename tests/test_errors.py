"""archc's diagnostics: one test per error class.

Each bad input must print `file:line:col: error: message`, the source line with a caret
under the offending text and, where one helps, a `hint:` -- exit code 2, never a traceback.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from archc import _cli
from archc.compiler import ArchError, load_source
from archc.compiler import _diagnose, _parser

ANY = object()  # check(..., hint=ANY): a hint is present, its text is checked separately
HEAD = "network N() {\n    x = input(3, 32, 32)\n"


def run(tmp_path, monkeypatch, capsys, source, *argv, command="check", name="t.arch"):
    """Write `source` to tmp_path/name and run `archc <command> name argv`: (rc, stderr)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(source)
    rc = _cli.main([command, name, *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, err


def check(err, where, message, line_text=None, caret=None, hint=None):
    """Assert the diagnostic's header, excerpt, caret column and width, and hint."""
    lines = err.rstrip("\n").split("\n")
    assert lines[0] == f"{where}: error: {message}", err
    _, line, col = where.rsplit(":", 2)
    if line_text is not None:
        gutter = f" {line} | "
        assert lines[1] == gutter + line_text, err
        marks = lines[2][len(gutter):]
        assert lines[2].startswith(" " * (len(line) + 1) + " | "), err
        assert marks.index("^") == int(col) - 1, err  # the caret stands under column `col`
        if caret is not None:
            assert marks.strip() == "^" * len(caret), err
            assert line_text[int(col) - 1:int(col) - 1 + len(caret)] == caret, err
    hints = [ln for ln in lines if ln.startswith("hint: ")]
    if hint is None:
        assert not hints, err
    elif hint is ANY:
        assert len(hints) == 1, err
    else:
        assert hints == [f"hint: {hint}"], err


@pytest.fixture
def diag(tmp_path, monkeypatch, capsys):
    def f(source, *argv, **kw):
        rc, err = run(tmp_path, monkeypatch, capsys, source, *argv, **kw)
        assert rc == 2, err
        return err
    return f


# ---- syntax ---------------------------------------------------------------------------
def test_missing_comma_between_arguments(diag):
    err = diag(HEAD + "    y = conv(x, 16 kernel=3)\n    return y\n}\n")
    check(err, "t.arch:3:20", "missing ',' between arguments",
          "    y = conv(x, 16 kernel=3)", caret="kernel")


def test_assign_instead_of_compare(diag):
    err = diag(HEAD + "    if x.channels = 3 {\n        x = relu(x)\n    }\n    return x\n}\n")
    check(err, "t.arch:3:19", "'=' assigns a value; to compare, use '=='",
          "    if x.channels = 3 {", caret="=")


def test_unclosed_brace_points_at_the_opener(diag):
    err = diag(HEAD + "    return x\n")
    check(err, "t.arch:1:13", "'{' is never closed", "network N() {", caret="{",
          hint="the file ends before its '}'")


def test_missing_inner_brace_points_at_it(diag):
    """The '}' that closes the block is indented as the block's line, so the `for` body's
    '{' is the one not closed (the parser pairs the '}' with it and fails at `network`)."""
    src = ("block b(x: tensor) {\n    for i in range(2) {\n        x = x -> relu\n"
           "    return x\n}\n\n" + HEAD + "    return b(x)\n}\n")
    err = diag(src)
    check(err, "t.arch:2:23", "'{' is never closed", "    for i in range(2) {", caret="{",
          hint="the '}' at line 5 is indented to close an outer '{'")


def test_missing_inner_brace_at_the_end_of_the_file(diag):
    err = diag(HEAD + "    if true {\n        x = relu(x)\n    return x\n}\n")
    check(err, "t.arch:3:13", "'{' is never closed", "    if true {", caret="{",
          hint="the '}' at line 6 is indented to close an outer '{'")


def test_missing_brace_before_the_next_definition(diag):
    """`network` after an unclosed block body: the block's '{', not the next definition."""
    err = diag("block b(x: tensor) {\n    return x\n\n" + HEAD + "    return b(x)\n}\n")
    check(err, "t.arch:1:20", "'{' is never closed", "block b(x: tensor) {", caret="{",
          hint="expected '}' before 'network' at line 4")


def test_unclosed_paren_before_next_line(diag):
    err = diag(HEAD + "    y = conv(x, 16, kernel=3\n    return y\n}\n")
    check(err, "t.arch:3:13", "'(' is never closed", "    y = conv(x, 16, kernel=3", caret="(",
          hint="expected ')' before 'return' at line 4, column 5")


def test_stray_character(diag):
    err = diag(HEAD + "    y = x -> relu;\n    return y\n}\n")
    check(err, "t.arch:3:18", "unexpected character ';'", "    y = x -> relu;", caret=";",
          hint="statements end at the end of the line; no ';' is needed")


def test_unmatched_closer(diag):
    err = diag(HEAD + "    y = relu(x))\n    return y\n}\n")
    check(err, "t.arch:3:16", "unmatched ')'", "    y = relu(x))", caret=")",
          hint="no '(' is open here")


def test_bare_call_statement(diag):
    err = diag(HEAD + "    relu(x)\n    return x\n}\n")
    check(err, "t.arch:3:5", "a statement cannot be a bare expression; assign its value",
          "    relu(x)", caret="relu", hint="e.g. `y = relu(...)`")


def test_else_if(diag):
    err = diag(HEAD + "    if true {\n    } else if false {\n    }\n    return x\n}\n")
    check(err, "t.arch:4:12", "use `elif` for 'else if'", "    } else if false {", caret="if",
          hint="if a { ... } elif b { ... } else { ... }")


def test_unterminated_string(diag):
    err = diag(HEAD + '    y = "abc\n    return x\n}\n')
    check(err, "t.arch:3:9", "unterminated string", '    y = "abc', caret='"',
          hint="a string ends with '\"' on the same line")


@pytest.mark.parametrize("message", sorted(_diagnose._EXAMPLES))
def test_every_known_mistake_is_recognised(message):
    """Each example of `_EXAMPLES` produces its message, also when nested deeper."""
    for example in _diagnose._EXAMPLES[message]:
        with pytest.raises(ArchError) as info:
            _parser.parse(example, "e.arch")
        assert info.value.message == message, example
        if example.startswith("network N() { ") and example.endswith(" }"):
            inner = example[len("network N() { "):-2]
            nested = ("network N() {\n  for i in range(2) {\n    if true {\n      " + inner
                      + "\n    }\n  }\n}\n")
            with pytest.raises(ArchError) as info:
                _parser.parse(nested, "e.arch")
            assert info.value.message == message, nested


# ---- semantic -------------------------------------------------------------------------
def test_unknown_layer(diag):
    err = diag(HEAD + "    y = convv(x, 16, kernel=3)\n    return y\n}\n")
    check(err, "t.arch:3:9", "unknown layer, block or function 'convv'",
          "    y = convv(x, 16, kernel=3)", caret="convv", hint="did you mean 'conv'?")


def test_unknown_block(diag):
    err = diag(HEAD + "    y = sqnxt_blok(x, 32)\n    return y\n}\n")
    check(err, "t.arch:3:9", "unknown layer, block or function 'sqnxt_blok'",
          "    y = sqnxt_blok(x, 32)", caret="sqnxt_blok",
          hint='define it with `block`, or import it: import "std/....arch"')


def test_unknown_block_parameter(diag):
    src = ("block b(x: tensor, out: int) {\n    return conv(x, out, kernel=1)\n}\n" + HEAD
           + "    y = b(x, 8, outs=3)\n    return y\n}\n")
    err = diag(src)
    check(err, "t.arch:6:17", "block 'b' has no parameter 'outs'", "    y = b(x, 8, outs=3)",
          caret="outs=3", hint="did you mean 'out'?")


def test_unknown_keyword(diag):
    err = diag(HEAD + "    y = conv(x, 16, kernal=3)\n    return y\n}\n")
    check(err, "t.arch:3:21", "conv() has no argument 'kernal'", "    y = conv(x, 16, kernal=3)",
          caret="kernal=3", hint="did you mean 'kernel'?")


def test_wrong_type(diag):
    err = diag(HEAD + '    y = conv(x, 16, kernel=3, bias="yes")\n    return y\n}\n')
    check(err, "t.arch:3:31", 'conv(): argument \'bias\' must be true or false, got string "yes"',
          '    y = conv(x, 16, kernel=3, bias="yes")', caret='bias="yes"')


def test_unknown_name_true_hint(diag):
    err = diag(HEAD + "    y = conv(x, 16, kernel=3, bias=True)\n    return y\n}\n")
    check(err, "t.arch:3:36", "unknown name 'True'", "    y = conv(x, 16, kernel=3, bias=True)",
          caret="True", hint="write it in lower case: true")


def test_channel_mismatch_at_add(diag):
    err = diag(HEAD + "    a = conv(x, 16, kernel=3)\n    b = conv(x, 8, kernel=3)\n"
               "    y = add(a, b)\n    return y\n}\n")
    check(err, "t.arch:5:9",
          "add: input 2 is 8x30x30 (C x H x W) but input 1 is 16x30x30; channels differ",
          "    y = add(a, b)", caret="add(a, b)",
          hint="a residual needs a projection (1x1 conv) when channels or stride change")


def test_spatial_mismatch_at_concat(diag):
    err = diag(HEAD + "    a = conv(x, 16, kernel=3, stride=2, padding=1)\n"
               "    y = concat(a, x)\n    return y\n}\n")
    check(err, "t.arch:4:9",
          "concat: input 2 is 3x32x32 (C x H x W) but input 1 is 16x16x16; spatial sizes must match",
          "    y = concat(a, x)", caret="concat(a, x)", hint="check strides and paddings of the branches")


def test_spatial_size_not_positive_points_at_the_pipe_stage(diag):
    err = diag(HEAD + "    y = x -> global_avgpool -> maxpool(3)\n    return y\n}\n")
    check(err, "t.arch:3:32",
          "maxpool output would be 0x0 (H x W): input 1x1, kernel 3x3, stride 3x3, padding 0x0",
          "    y = x -> global_avgpool -> maxpool(3)", caret="maxpool(3)",
          hint="the spatial size must stay positive; use a smaller kernel or stride, more padding, "
               "or a larger input")


def test_non_integer_channel_count(diag):
    err = diag(HEAD + "    y = conv(x, 64 * 0.75 + 0.5, kernel=1)\n    return y\n}\n")
    check(err, "t.arch:3:17", "conv(): argument 'out' must be an integer, got float 48.5",
          "    y = conv(x, 64 * 0.75 + 0.5, kernel=1)", caret="64 * 0.75 + 0.5",
          hint="channel counts and sizes must be whole numbers; choose the rounding explicitly "
               "with int(...), round(...) or ceil(...)")


def test_recursion_through_two_blocks(diag):
    src = ("block a(x: tensor) {\n    return b(x)\n}\nblock b(x: tensor) {\n    return a(x)\n}\n"
           + HEAD + "    return a(x)\n}\n")
    err = diag(src)
    check(err, "t.arch:5:12", "block 'a' calls itself through a -> b -> a (recursion is not allowed)",
          "    return a(x)", caret="a(x)",
          hint="repeat a block with a loop: for i in range(n) { ... }")
    assert "note: in block 'b' called at t.arch:2:12" in err


def test_duplicate_layer_name(diag):
    err = diag(HEAD + "    y = c: conv(x, 16, kernel=3)\n    y = c: conv(y, 16, kernel=3)\n"
               "    return y\n}\n")
    check(err, "t.arch:4:9", "the name 'c' is already used (at t.arch:3:9)",
          "    y = c: conv(y, 16, kernel=3)", caret="c: conv(y, 16, kernel=3)",
          hint="names must be unique within a block; inside a loop, label the loop "
               "(`stage: for ...`) so that each iteration gets its own scope")


def test_missing_return_points_at_the_closing_brace(diag):
    err = diag(HEAD + "    y = relu(x)\n}\n")
    check(err, "t.arch:4:1", "network 'N' ends without `return`", "}", caret="}",
          hint="end the body with `return <output tensor>`")


def test_import_not_found(diag):
    err = diag('import "std/sqnx.arch"\n' + HEAD + "    return x\n}\n")
    check(err, "t.arch:1:1", "cannot find 'std/sqnx.arch' next to this file or in the bundled library",
          'import "std/sqnx.arch"', caret='import "std/sqnx.arch"', hint=ANY)
    assert "hint: did you mean 'std/sqnxt.arch'" in err


def test_unknown_type(diag):
    err = diag("network N(width: flaot = 1.0) {\n    x = input(3, 32, 32)\n    return x\n}\n")
    check(err, "t.arch:1:18", "unknown type 'flaot'", "network N(width: flaot = 1.0) {",
          caret="flaot", hint="types are int, float, bool, string, list, tensor")


def test_assert_failure(diag):
    err = diag(HEAD + '    assert x.channels == 4, "need RGBA input"\n    return x\n}\n')
    check(err, "t.arch:3:5", "assertion failed: need RGBA input",
          '    assert x.channels == 4, "need RGBA input"',
          caret='assert x.channels == 4, "need RGBA input"')


# ---- -D values ---------------------------------------------------------------------------
NET = ("network N(width: float = 1.0, stages: list = [1, 2]) {\n    x = input(3, 8, 8)\n"
       "    return conv(x, int(8 * width), kernel=1)\n}\n")


def test_define_unknown_parameter(diag):
    err = diag(NET, "-D", "stagez=[1]")
    check(err, "<-D>:1:4", "network 'N' has no parameter 'stagez'", "-D stagez=[1]",
          caret="stagez", hint="did you mean 'stages'?")


def test_define_bare_word(diag):
    err = diag(NET, "-D", "width=abc")
    check(err, "<-D>:1:10",
          "parameter 'width': a -D value must be a literal: a number, true/false, a \"string\" "
          "or a [list]",
          "-D width=abc", caret="abc",
          hint='a bare word is a name, not a string; quote it: -D width="abc"')


def test_define_syntax_error(diag):
    err = diag(NET, "-D", "stages=[1,2")
    check(err, "<-D>:1:11", "parameter 'stages': '[' is never closed", "-D stages=[1,2",
          caret="[", hint='a -D value is a literal: a number (-D width=0.5), true or false, a '
                          '"string" (-D act="relu") or a [list] (-D stages=[1, 2, 8, 1])')


@pytest.mark.parametrize("define, caret, hint", [
    ("width=0.5x", "0.5x", "a number is written alone, without a unit or suffix: -D width=0.5"),
    ("stages=1,2,8,1", "1,2,8,1", "a list is written in brackets: -D stages=[1,2,8,1]"),
    ("stages=1 2 8 1", "1 2 8 1",
     "a list is written in brackets, with commas: -D stages=[1, 2, 8, 1]"),
    ("width=)", ")", 'a -D value is a literal: a number (-D width=0.5), true or false, a '
                     '"string" (-D act="relu") or a [list] (-D stages=[1, 2, 8, 1])'),
])
def test_define_not_a_literal_names_the_parameter_and_the_syntax(diag, define, caret, hint):
    """Issue 13: `-D width=0.5x` said "expected ':', ',' or '='" and `-D stages=1,2,8,1`
    suggested a statement."""
    name, value = define.split("=", 1)
    err = diag(NET, "-D", define)
    check(err, f"<-D>:1:{len(name) + 5}", f"parameter '{name}': '{value}' is not a literal value",
          f"-D {define}", caret=caret, hint=hint)


def test_define_wrong_type(diag):
    err = diag(NET, "-D", 'width="x"')
    check(err, "<-D>:1:10", "parameter 'width': expected float, got string \"x\"",
          '-D width="x"', caret='"x"')


def test_define_without_equals(diag):
    err = diag(NET, "-D", "width")
    check(err, "<-D>:1:4", "-D expects name=value, got 'width'", "-D width", caret="width",
          hint="e.g. -D width=0.5")


def test_define_spaces_are_normalised(diag):
    err = diag(NET, "-D", " width = abc ")
    check(err, "<-D>:1:10",
          "parameter 'width': a -D value must be a literal: a number, true/false, a \"string\" "
          "or a [list]",
          "-D width=abc", caret="abc",
          hint='a bare word is a name, not a string; quote it: -D width="abc"')


def test_define_expression_is_not_evaluated(diag):
    err = diag(NET, "-D", "width=2**3", command="analyze")
    check(err, "<-D>:1:10",
          "parameter 'width': a -D value must be a literal: a number, true/false, a \"string\" "
          "or a [list]",
          "-D width=2**3", caret="2**3",
          hint="-D values are not evaluated; give the value itself, e.g. 64 or [1, 2, 8, 1]")


# ---- real subprocesses and the Python API --------------------------------------------------
@pytest.mark.parametrize("source, where", [
    (HEAD + "    y = conv(x, 16 kernel=3)\n    return y\n}\n", "t.arch:3:20"),
    (HEAD + "    y = convv(x)\n    return y\n}\n", "t.arch:3:9"),
])
def test_subprocess_exit_code_and_no_traceback(tmp_path, source, where):
    (tmp_path / "t.arch").write_text(source)
    for cmd in (["archc", "analyze", "t.arch"],
                [sys.executable, "-m", "archc", "check", "t.arch"]):
        p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, p.stderr
        assert p.stderr.startswith(where + ": error: "), p.stderr
        assert "Traceback" not in p.stderr


def test_subprocess_define_error(tmp_path):
    p = subprocess.run(["archc", "analyze", "se_sqnxt", "-D", "stagez=[1]"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.startswith("<-D>:1:4: error: network 'SESqueezeNext' has no parameter 'stagez'")
    assert "hint: did you mean 'stages'?" in p.stderr


def test_api_raises_positioned_archerror():
    with pytest.raises(ArchError) as info:
        load_source(HEAD + "    return convv(x)\n}\n", filename="api.arch")
    assert info.value.format().startswith("api.arch:3:12: error: unknown layer")


# ---- source text: excerpts are exact and bounded (issue 12, class 3) -----------------------
def _raw(tmp_path, monkeypatch, capsys, data: bytes, *argv, command="check"):
    """Run `archc <command> t.arch` on raw bytes: (rc, stderr)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.arch").write_bytes(data)
    rc = _cli.main([command, "t.arch", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, err


@pytest.mark.parametrize("brk", ["\f", "\v", "\x1c", "\x85", "\u2028", "\u2029"])
def test_excerpt_counts_lines_as_the_lexer_does(diag, brk):
    """str.splitlines() splits on these; the lexer does not: the excerpt shows the line
    the position refers to."""
    err = diag(HEAD + f"    # a comment{brk}still the comment\n    y = zz\n    return y\n}}\n")
    check(err, "t.arch:4:9", "unknown name 'zz'", "    y = zz", caret="zz")


def test_form_feed_in_the_error_line_is_escaped(diag):
    err = diag(HEAD + "\f    y = zz\n    return y\n}\n")
    assert err.split("\n")[1] == " 3 | \\x0c    y = zz", err
    assert err.split("\n")[2] == "   | " + " " * 12 + "^^", err


def test_terminal_escapes_are_shown_escaped(diag):
    err = diag(HEAD + '    y = "\x1b[2J\u202e" + 1\n    return y\n}\n')
    assert "\x1b" not in err and "\u202e" not in err, repr(err)
    assert "\\x1b[2J\\u202e" in err, err


def test_invalid_utf8_has_a_position(tmp_path, monkeypatch, capsys):
    src = (HEAD + "    y = 1  # caf\xe9\n    return x\n}\n").encode("latin-1")
    rc, err = _raw(tmp_path, monkeypatch, capsys, src)
    assert rc == 2
    check(err, "t.arch:3:17", "'t.arch' is not UTF-8 text: byte e9 at line 3, column 17 "
          "cannot be decoded", hint="save the file as UTF-8")
    assert err.split("\n")[1] == " 3 |     y = 1  # caf\\xe9", err
    assert err.split("\n")[2] == "   |                 ^^^^", err


def test_a_byte_order_mark_is_accepted(tmp_path, monkeypatch, capsys):
    rc, err = _raw(tmp_path, monkeypatch, capsys,
                   b"\xef\xbb\xbf" + (HEAD + "    return x\n}\n").encode())
    assert rc == 0, err
    rc, err = _raw(tmp_path, monkeypatch, capsys, b"\xef\xbb\xbfnetwork N() { y = zz }\n")
    check(err, "t.arch:1:19", "unknown name 'zz'", "network N() { y = zz }", caret="zz")


def test_a_megabyte_line_gives_a_short_excerpt(tmp_path, monkeypatch, capsys):
    items = "1," + " " * 900_000 + "2, 3, "
    src = (HEAD + f"    y = [{items}zz]\n    return x\n}}\n").encode()
    rc, err = _raw(tmp_path, monkeypatch, capsys, src)
    assert rc == 2 and len(err) < 1000, len(err)
    col = len("    y = [" + items) + 1
    lines = err.split("\n")
    assert lines[0] == f"t.arch:3:{col}: error: unknown name 'zz'"
    assert lines[1].endswith("  2, 3, zz]") and " 3 | ..." in lines[1], lines[1]
    assert lines[2].index("^^") == lines[1].index("zz]"), err
    rc, err = _raw(tmp_path, monkeypatch, capsys, (HEAD + "    y = zz  #" + "c" * 900_000 +
                                                   "\n    return x\n}\n").encode())
    assert rc == 2 and len(err) < 1000 and err.split("\n")[1].endswith("..."), err[:300]


def test_wide_characters_keep_the_caret_aligned(diag):
    err = diag(HEAD + '    y = ["漢字", zz]\n    return y\n}\n')
    line, caret = err.split("\n")[1:3]
    assert caret.index("^") == line.index("zz") + line[:line.index("zz")].count("漢") + \
        line[:line.index("zz")].count("字"), err


def test_a_huge_name_is_cut_short(diag):
    err = diag(HEAD + "    y = " + "a" * 200_000 + "\n    return y\n}\n")
    assert len(err) < 2500 and "more characters" in err, len(err)


# ---- non-finite numbers never reach JSON (issue 12, class 2) -------------------------------
def test_json_output_is_strict_json(tmp_path, monkeypatch, capsys):
    import json
    from archc.presentation.report import json_text
    assert json.loads(json_text({"a": float("nan"), "b": [float("inf"), 1.5]})) == \
        {"a": None, "b": [None, 1.5]}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.arch").write_text(
        "network N(a: float = 0.5) {\n x = input(3, 8, 8)\n x = bn(x, eps=1e-300)\n"
        " x = elu(x, alpha=a * 1e300)\n return x\n}\n")
    for argv in (["--format", "json"], ["--format", "json", "--bitops", "table1"]):
        assert _cli.main(["analyze", "t.arch", *argv]) == 0
        out = capsys.readouterr().out

        def strict(c):
            raise ValueError(c)
        json.loads(out, parse_constant=strict)


def test_values_printed_in_reports_are_escaped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.arch").write_text('network N(s: string = "a\x1b[2J\u202eb") {\n'
                                     " x = input(3, 8, 8)\n return x\n}\n")
    for fmt in ("table", "markdown"):
        assert _cli.main(["analyze", "t.arch", "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\u202e" not in out and '"a\\x1b[2J\\u202eb"' in out


def test_quant_spec_that_is_not_text_is_a_positioned_error(tmp_path):
    """A --quant file is read like an .arch file: bounded, decoded with the bad byte's
    position, lines numbered as the parser numbers them (a form feed does not end a line)."""
    from archc._cli import main
    bad = tmp_path / "bin.quant"
    bad.write_bytes(b"conv*: weight_bits=8\n\xd0\xff\n")
    assert main(["analyze", "se_sqnxt", "--bitops", "table1", "--quant", str(bad)]) == 2
    ff = tmp_path / "ff.quant"
    ff.write_text("conv*: weight_bits=8\f\nbad: w=1\n")
    from archc.compiler.quant import load_quant
    with pytest.raises(ArchError) as e:
        load_quant(str(ff))
    assert e.value.span.line == 2


# ---- resampling, rearranging and stochastic-depth ops (issue 13) ---------------------------
def _op_error(diag, stmt):
    return diag(HEAD + f"    {stmt}\n    return y\n}}\n")


def test_upsample_bad_scale(diag):
    err = _op_error(diag, "y = upsample(x, 0)")
    check(err, "t.arch:3:21", "upsample(): argument 'scale' must be at least 1, got 0",
          "    y = upsample(x, 0)", caret="0")
    err = _op_error(diag, "y = upsample(x, 1.5)")
    check(err, "t.arch:3:21", "upsample(): argument 'scale' must be an integer, got float 1.5",
          "    y = upsample(x, 1.5)", caret="1.5", hint=ANY)


def test_upsample_scale_and_size_together_or_neither(diag):
    hint = "upsample(x, 2) doubles H and W; upsample(x, size=[h, w]) resizes to h x w"
    err = _op_error(diag, "y = upsample(x, 2, size=[3, 3])")
    check(err, "t.arch:3:24", "upsample needs exactly one of scale and size",
          "    y = upsample(x, 2, size=[3, 3])", caret="size=[3, 3]", hint=hint)
    err = _op_error(diag, "y = upsample(x)")
    check(err, "t.arch:3:9", "upsample needs exactly one of scale and size",
          "    y = upsample(x)", caret="upsample(x)", hint=hint)


def test_upsample_align_corners_needs_bilinear_and_mode_is_checked(diag):
    err = _op_error(diag, "y = upsample(x, 2, align_corners=true)")
    check(err, "t.arch:3:24", 'upsample: align_corners=true needs mode="bilinear"',
          "    y = upsample(x, 2, align_corners=true)", caret="align_corners=true",
          hint="PyTorch defines align_corners only for interpolating modes")
    err = _op_error(diag, 'y = upsample(x, 2, mode="bicubic")')
    check(err, "t.arch:3:24", "upsample(): argument 'mode' must be one of \"nearest\", \"bilinear\"",
          '    y = upsample(x, 2, mode="bicubic")', caret='mode="bicubic"')


@pytest.mark.parametrize("stmt, col, message", [
    ("y = pixel_shuffle(x, 2)", 26, "pixel_shuffle: 3 channels are not divisible by r^2 = 4"),
    ("y = pixel_unshuffle(x, 3)", 28,
     "pixel_unshuffle: the input's 32x32 (H x W) is not divisible by r = 3"),
    ("y = channel_shuffle(x, 2)", 28, "channel_shuffle: 3 channels are not divisible by groups=2"),
])
def test_rearrangement_sizes_that_do_not_divide(diag, stmt, col, message):
    check(_op_error(diag, stmt), f"t.arch:3:{col}", message, "    " + stmt, caret=stmt[col - 5])


def test_conv_transpose_errors(diag):
    stmt = "y = conv_transpose(x, 8, kernel=3, stride=2, output_padding=2)"
    check(_op_error(diag, stmt), "t.arch:3:50",
          "conv_transpose: output_padding 2 must be smaller than stride 2 or dilation 1",
          "    " + stmt, caret="output_padding=2", hint=ANY)
    stmt = "y = conv_transpose(x, 8, kernel=3, groups=2)"
    check(_op_error(diag, stmt), "t.arch:3:40",
          "conv_transpose: input channels 3 are not divisible by groups=2", "    " + stmt,
          caret="groups=2")
    stmt = "y = x -> global_avgpool -> conv_transpose(8, kernel=1, padding=1)"
    check(_op_error(diag, stmt), "t.arch:3:32",
          "conv_transpose output would be 0x0 (H x W): input 1x1, kernel 1x1, padding 1x1",
          "    " + stmt, caret="conv_transpose(8, kernel=1, padding=1)",
          hint="the spatial size must stay positive")


@pytest.mark.parametrize("p, message", [
    ("1.0", "drop_path probability must be in [0, 1), got 1.0"),
    ("-0.1", "drop_path(): argument 'p' must be at least 0.0, got -0.1"),
])
def test_drop_path_probability_outside_0_1(diag, p, message):
    stmt = f"y = drop_path(x, {p})"
    check(_op_error(diag, stmt), "t.arch:3:22", message, "    " + stmt, caret=p)


def test_adaptive_pool_size_must_be_positive(diag):
    stmt = "y = adaptive_maxpool(x, [0, 2])"
    check(_op_error(diag, stmt), "t.arch:3:29",
          "adaptive_maxpool(): argument 'size' must be at least 1, got 0", "    " + stmt,
          caret="[0, 2]")


def test_crop_larger_than_the_input(diag):
    stmt = "y = crop(x, [16, 40])"
    check(_op_error(diag, stmt), "t.arch:3:17",
          "crop: 16x40 is larger than the input's 32x32 (H x W)", "    " + stmt, caret="[16, 40]")


# ---- the normalisation ops, gelu, tf_same padding, slices ------------------------------
def test_group_norm_groups_must_divide_the_channels(diag):
    err = diag(HEAD + "    y = x -> group_norm(2)\n    return y\n}\n")
    check(err, "t.arch:3:25", "group_norm: channels 3 are not divisible by groups=2",
          "    y = x -> group_norm(2)", caret="2",
          hint="choose groups that divide the channel count")


def test_gelu_approximate_names_its_choices(diag):
    err = diag(HEAD + '    y = x -> gelu(approximate="fast")\n    return y\n}\n')
    check(err, "t.arch:3:19", "gelu(): argument 'approximate' must be one of \"none\", \"tanh\"",
          '    y = x -> gelu(approximate="fast")', caret='approximate="fast"')


def test_same_padding_with_an_even_kernel_suggests_tf_same(diag):
    err = diag(HEAD + '    y = x -> conv(8, kernel=2, padding="same")\n    return y\n}\n')
    check(err, "t.arch:3:32", 'padding "same" needs an odd kernel, got 2',
          '    y = x -> conv(8, kernel=2, padding="same")', caret='padding="same"', hint=ANY)
    assert '"tf_same"' in err


def test_slice_bound_of_the_wrong_type(diag):
    err = diag(HEAD + '    ws = [8, 16]\n    y = conv(x, ws[0:"1"][0], kernel=1)\n'
               '    return y\n}\n')
    check(err, "t.arch:4:22", "slice bound must be an int, got string",
          '    y = conv(x, ws[0:"1"][0], kernel=1)', caret='"1"', hint=ANY)
