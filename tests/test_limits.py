"""Hostile input must end (quickly) with a positioned error, never hang or exhaust memory.

Each case runs `archc check` in a subprocess with a 20 s timeout: the bound only asserts
termination, not speed. The limits themselves live in compiler/limits.py.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from archc.compiler import limits

from _runtime import slow_unless  # tests/

HEAD = "network N() {\n x = input(3, 32, 32)\n"
TAIL = " return x\n}\n"
POSITIONED = re.compile(r"^t\.arch:(\d+):(\d+): error: (.*)$", re.M)


def body(text: str) -> str:
    return HEAD + text + "\n" + TAIL


CASES = {
    "nested_parens": (body(" y = " + "(" * 10_000 + "1" + ")" * 10_000),
                      "brackets are nested more than"),
    "nested_lists": (body(" y = " + "[" * 10_000 + "]" * 10_000), "brackets are nested more than"),
    "nested_braces": (body(" if true {" * 10_000 + "}" * 10_000), "brackets are nested more than"),
    "nested_operators": (body(" y = " + "not " * 10_000 + "true"), "nesting is too deep"),
    "range_1e9": (body(" for i in range(10**9) {\n  y = i\n }"), "exceeds the limit"),
    "loops_1e12": (body(" for i in range(100000) {\n  for j in range(100000) {\n"
                        "   for k in range(100) {\n    y = 1\n   }\n  }\n }"),
                   f"evaluation takes more than {limits.MAX_STEPS} steps"),
    "list_doubling": (body(" l = [1]\n for i in range(100) {\n  l = l + l\n }"),
                      f"list longer than {limits.MAX_LIST} elements"),
    "list_repeat": (body(" l = [1] * 10**9"), f"list longer than {limits.MAX_LIST} elements"),
    "pow_2_10000": (body(" y = 2**10000"), "exponent 10000 is out of range"),
    "pow_10_100": (body(" y = 10**100"), "exponent 100 is out of range"),
    "int_overflow": (body(" y = 2**62 * 4"), "is larger than the limit"),
    "int_of_huge_float": (body(" y = int(1e300)"), "integer of 301 digits is larger than the limit"),
    "huge_int_literal": (body(" y = " + "9" * 5000), "integer literal is too large"),
    "node_limit": (body(" for i in range(1000) {\n  for j in range(300) {\n   x = relu(x)\n  }\n }"),
                   f"the network has more than {limits.MAX_NODES} layers"),
    "string_doubling": (body(' s = "ab"\n for i in range(40) {\n  s = s + s\n }'),
                        f"string longer than {limits.MAX_STRING} characters"),
    "long_string_literal": (body(' s = "' + "a" * 200_000 + '"'),
                            f"string is longer than {limits.MAX_STRING} characters"),
    "many_tokens": (body(" y = [" + "1, " * 60_000 + "1]"),
                    f"the source has more than {limits.MAX_TOKENS} tokens"),
    "mutual_recursion": ("block a(x: tensor) {\n return b(x)\n}\nblock b(x: tensor) {\n return a(x)\n}\n"
                         + HEAD + " return a(x)\n}\n", "recursion is not allowed"),
}


def archc_check(cwd, *argv):
    return subprocess.run([sys.executable, "-m", "archc", "check", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=20)


# the two hostile inputs that run until a limit stops them are left out of the development loop
@pytest.mark.parametrize("case", slow_unless(sorted(CASES),
                                             lambda c: c not in ("loops_1e12", "node_limit")))
def test_hostile_input_ends_with_a_positioned_error(tmp_path, case):
    source, message = CASES[case]
    (tmp_path / "t.arch").write_text(source)
    p = archc_check(tmp_path, "t.arch")
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    m = POSITIONED.match(p.stderr)
    assert m, p.stderr[:500]
    assert message in m.group(3), p.stderr[:500]
    assert 1 <= int(m.group(1)) <= source.count("\n") + 1


def test_five_megabyte_file(tmp_path):
    (tmp_path / "t.arch").write_text(body(" y = 1\n" * 750_000))
    assert (tmp_path / "t.arch").stat().st_size > 5_000_000
    p = archc_check(tmp_path, "t.arch")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.startswith(f"t.arch:1:1: error: 't.arch' is larger than {limits.MAX_SOURCE_BYTES}")


def test_five_megabyte_source_text():
    from archc.compiler import ArchError, load_source
    with pytest.raises(ArchError) as info:
        load_source(body(" y = 1\n" * 700_000), filename="big.arch")
    assert info.value.format().startswith("big.arch:1:1: error: file is larger than")


def test_import_cycle_terminates_and_works(tmp_path):
    (tmp_path / "a.arch").write_text('import "b.arch"\nblock fa(x: tensor) {\n return relu(x)\n}\n'
                                     "network N() {\n x = input(3, 8, 8)\n return fb(x)\n}\n")
    (tmp_path / "b.arch").write_text('import "a.arch"\nblock fb(x: tensor) {\n return fa(x)\n}\n')
    p = archc_check(tmp_path, "a.arch")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ok: N:")


def test_import_cycle_between_block_files(tmp_path):
    (tmp_path / "c.arch").write_text('import "d.arch"\nblock fc(x: tensor) {\n return relu(x)\n}\n')
    (tmp_path / "d.arch").write_text('import "c.arch"\nblock fd(x: tensor) {\n return fc(x)\n}\n')
    (tmp_path / "m.arch").write_text('import "c.arch"\nnetwork N() {\n x = input(3, 8, 8)\n'
                                     " return fd(x)\n}\n")
    p = archc_check(tmp_path, "m.arch")
    assert p.returncode == 0, p.stderr


def test_self_import(tmp_path):
    (tmp_path / "s.arch").write_text('import "s.arch"\nnetwork N() {\n x = input(3, 8, 8)\n return x\n}\n')
    p = archc_check(tmp_path, "s.arch")
    assert p.returncode == 0, p.stderr


def test_bundled_networks_are_far_below_the_limits():
    from archc.compiler import bundled_networks, load
    for name in bundled_networks():
        net = load(name)
        assert len(net.graph) < limits.MAX_NODES // 5, name


# ---- every builtin and operator bounds its cost before computing (issue 12, class 1) --------
# and no non-finite number gets past the place where it arises (class 2). One subprocess
# evaluates all of these in turn (a hang fails the test that was running, by name).
VALUE_CASES = {
    # Python computes 10**-digits for an int: clamped to the digits that can matter
    "round_int_huge_negative_digits": (" y = round(15, -10**17)\n assert y == 0", None),
    "round_float_huge_digits": (" y = round(1.5, 10**17)\n assert y == 1.5", None),
    "round_bool_digits": (" y = round(1.5, true)", "digits must be an integer"),
    "nested_list_repeat": (" a = [[[1] * 1000] * 1000] * 1000",
                           f"list longer than {limits.MAX_LIST} elements (counting"),
    "nested_list_doubling": (" l = [1]\n for i in range(200) {\n  l = [l, l]\n }",
                             f"list longer than {limits.MAX_LIST} elements (counting"),
    "deep_list_loop": (" l = [1]\n for i in range(100000) {\n  l = [l]\n }",
                       f"lists nested more than {limits.MAX_LIST_DEPTH} levels deep"),
    "str_of_a_long_list": (" y = str([1] * 10000)",
                           f"longer than {limits.MAX_STRING} characters"),
    "append_in_a_loop": (" l = []\n for i in range(100000) {\n  l = l + [i]\n }",
                         f"evaluation handles more than {limits.MAX_WORK} list elements"),
    "compare_in_a_loop": (" a = [0] * 99999\n for i in range(300) {\n  for j in range(300) {\n"
                          "   b = a == [1] + a\n  }\n }",
                          f"evaluation handles more than {limits.MAX_WORK} list elements"),
    "concat_in_a_loop": (" a = [x] * 99999\n for i in range(100) {\n  b = concat(a)\n }",
                         f"evaluation handles more than {limits.MAX_WORK} list elements"),
    "range_beyond_ssize_t": (" y = range(-2**62, 2**62)", "exceeds the limit"),
    "zip_of_long_lists": (" y = zip(range(100000), range(100000))",
                          f"list longer than {limits.MAX_LIST} elements"),
    "enumerate_of_a_long_list": (" y = enumerate(range(50000))",
                                 f"list longer than {limits.MAX_LIST} elements"),
    "sum_overflows": (" y = sum([1e308, 1e308])", "sum(): number overflow"),
    "float_power_overflows": (" y = 1e300 ** 2", "number overflow: the result is too large"),
    "float_product_overflows": (" y = 1e308 * 10", "number overflow"),
    "floor_division_overflows": (" y = 1e308 // 1e-308", "number overflow"),
    "bn_eps_from_arithmetic": (" x = bn(x, eps=sum([1e308, 1e308]))", "number overflow"),
    "elu_alpha_from_arithmetic": (" x = elu(x, alpha=1e200 * 1e200)", "number overflow"),
    "make_divisible_min_value": (' y = make_divisible(10, 8, "a")', "min_value must be a number"),
}
RUNNER = """
import json, sys
from archc.compiler import ArchError, load_source
for name, text in json.loads(sys.stdin.read()):
    print(json.dumps(["start", name]), flush=True)
    try:
        load_source(text, filename="t.arch")
        print(json.dumps(["ok", name, ""]), flush=True)
    except ArchError as err:
        print(json.dumps(["error", name, err.format()]), flush=True)
"""


@pytest.fixture(scope="module")
def value_results():
    import json
    cases = [(name, body(text)) for name, (text, _) in sorted(VALUE_CASES.items())]
    try:
        p = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(cases),
                           capture_output=True, text=True, timeout=120)
        out, err = p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        out, err = (exc.stdout or b"").decode(), "timed out"
    results, running = {}, None
    for line in out.splitlines():
        kind, name, *rest = json.loads(line)
        if kind == "start":
            running = name
        else:
            results[name], running = (kind, rest[0]), None
    return results, running, err


@pytest.mark.parametrize("case", sorted(VALUE_CASES))
def test_values_have_bounded_cost(value_results, case):
    results, running, err = value_results
    assert case != running, f"{case} did not end: {err[-2000:]}"
    assert case in results, err[-2000:]
    kind, text = results[case]
    want = VALUE_CASES[case][1]
    if want is None:
        assert kind == "ok", text
    else:
        assert kind == "error", case
        first = text.split("\n", 1)[0]
        assert re.match(r"^t\.arch:\d+:\d+: error: ", first), text
        assert want in first, text
        assert "(34, " not in text and "Numerical result" not in text, text
        assert len(text) < 1500, f"the message is {len(text)} characters long"


def test_messages_show_values_cut_short():
    from archc.compiler import ArchError, load_source
    with pytest.raises(ArchError) as info:
        load_source(body(" y = [7] * 100000\n z = y - 1"), filename="t.arch")
    out = info.value.format()
    assert "must be a number, got list [7, 7, 7" in out and "..." in out
    assert len(out) < 600, out
