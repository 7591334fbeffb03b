"""Test-session settings.

One XLA compilation cache for the whole session: JAX's persistent cache (which
`archc train` uses, training/jax_loop.use_compilation_cache) in a private temporary
folder, shared by every test, every pytest-xdist worker and every process a test starts
(they inherit the environment), and removed at the end. A program that several tests compile
-- the same network and recipe trained by the CLI, resumed, killed and resumed -- is compiled
once, and no test writes to the user's own cache (~/.cache/archc/xla). Likewise for decoded
data sets ($ARCHC_CACHE_DIR): the CIFAR-10 pack, read-only in ../shared, is decoded once per
session (as in CI, where HOME is empty), not into ~/.cache/archc/data.

Under pytest-xdist (the README's `pytest -q -n auto`) the workers share the machine's cores:
each worker, and every process a test starts, uses its share of threads, since XLA:CPU's and
torch's pools sized for the whole machine in every worker only contend. On the 2-core CI
machine one thread per XLA computation is also faster on its own (a train step of sqnxt
-D stages=[1,1,1,1]: 0.18 s single-threaded vs 0.22 s with two threads).

XLA:CPU compiles quickly rather than well in the tests (_xla.FAST_COMPILE, for the test
process and every process it starts). The tests compile hundreds of programs and run each a
few times: the train step of sqnxt -D stages=[1,1,1,1] -D width=0.25 at batch 50 compiles in
4.3 CPU s instead of 21.8 and runs in 0.26 s instead of 0.14 (bench/compile_time.py;
docs/benchmarks.md, "Test suite"). What is tested does not depend on these settings: the
numbers are compared with torch within tolerances, and a resumed run with an uninterrupted
one compiled the same way. The one test where the step time is the cost, the 300-step
learning run in test_train.py, runs with XLA's defaults, as users do (_xla.default_xla_env).
"""
from __future__ import annotations

import os
import shutil
import tempfile

from _xla import fast_compile, understood  # tests/

if "ARCHC_TEST_SESSION" not in os.environ:   # the controller, or a run without workers
    os.environ["ARCHC_TEST_SESSION"] = tempfile.mkdtemp(prefix="archc-tests-")  # mode 0700
    _OWNER = True
else:
    _OWNER = False
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(os.environ["ARCHC_TEST_SESSION"], "xla")
os.environ["ARCHC_CACHE_DIR"] = os.path.join(os.environ["ARCHC_TEST_SESSION"], "data")

# ARCHC_TEST_XLA_DEFAULTS=1 measures with XLA's defaults; the controller decides once for its
# workers (they inherit the environment), after asking this jaxlib whether it knows the flags
if "ARCHC_TEST_XLA_DEFAULTS" not in os.environ:
    os.environ["ARCHC_TEST_XLA_DEFAULTS"] = \
        "0" if understood(fast_compile(os.environ.get("XLA_FLAGS", ""))) else "1"
if os.environ["ARCHC_TEST_XLA_DEFAULTS"] == "0":
    os.environ["XLA_FLAGS"] = fast_compile(os.environ.get("XLA_FLAGS", ""))

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 1) // WORKERS)

if WORKERS > 1:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(THREADS))
    if THREADS == 1 and "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false").strip()


# The slowest files first (test-seconds under the README's command, 2026-12-02: test_train 226,
# test_jax_backend 168, test_onnx_backend 92, test_jax_train_mode 89, test_data_parallel 65).
# With --dist loadfile a worker takes whole files in collection order; a 4-minute file that
# comes last in the alphabet leaves the other worker idle at the end (it did: 535 s wall for
# 946 test-seconds on two workers).
SLOWEST_FIRST = ("test_train.py", "test_jax_backend.py", "test_onnx_backend.py",
                 "test_jax_train_mode.py", "test_data_parallel.py")
# The development loop (-m "not slow") leaves out most of those; its slowest files (test-seconds
# of the tests not marked slow, measured file by file on the shared machine, 2026-12-06:
# test_library 45, test_torch_backend 39, test_onnx_backend 32, test_train 27, test_limits 26,
# test_jax_backend 20, test_sweep 20, test_fuzz 19; docs/benchmarks.md, "Test suite").
SLOWEST_FIRST_NOT_SLOW = ("test_library.py", "test_torch_backend.py", "test_onnx_backend.py",
                          "test_train.py", "test_limits.py", "test_jax_backend.py",
                          "test_sweep.py", "test_fuzz.py")


def pytest_collection_modifyitems(config, items):
    order = SLOWEST_FIRST_NOT_SLOW if config.getoption("markexpr", "").replace(" ", "") == \
        "notslow" else SLOWEST_FIRST
    rank = {name: i for i, name in enumerate(order)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: else as collected


def pytest_report_header(config):
    if os.environ["ARCHC_TEST_XLA_DEFAULTS"] != "0":
        return "archc: XLA compiles with its default settings (the fast-compile flags are off)"
    return None


def pytest_unconfigure(config):
    if _OWNER and not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ["ARCHC_TEST_SESSION"], ignore_errors=True)
