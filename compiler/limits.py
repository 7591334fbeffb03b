"""Limits that keep hostile or runaway .arch input from hanging or exhausting memory.

Each limit raises a positioned ArchError when exceeded; none of them is reached by any
network in archs/ (the largest uses a few thousand nodes).
"""
MAX_SOURCE_BYTES = 1_000_000       # one .arch file
MAX_NESTING = 100                  # depth of the syntax tree (brackets, operators, blocks)
MAX_CALL_DEPTH = 64                # nested block calls (recursion is an error anyway)
MAX_IMPORTS = 256                  # files pulled in by `import`, transitively
MAX_NODES = 50_000                 # primitive layers in one network graph (~3 s to reach)
MAX_STEPS = 2_000_000              # statements + loop iterations + calls evaluated
MAX_LIST = 100_000                 # elements in one list value, nested lists counted
MAX_INT = 2**62                    # magnitude of any integer value (channels, sizes ...)
MAX_STRING = 10_000                # characters in one string value
MAX_LIST_DEPTH = 100               # levels of lists nested in one list value
MAX_ROUND_DIGITS = 400             # |digits| of round(x, digits) that can change a value
MAX_WORK = 20_000_000              # list elements built, compared or passed to calls, in all
MAX_TOKENS = 50_000                # tokens of one source (the largest bundled file has 1,400)
