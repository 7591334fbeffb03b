"""Test-session settings.

One XLA compilation cache for the whole session: JAX's persistent cache (which
`archc train` uses, backends/train/jax_loop.use_compilation_cache) in a private temporary
folder, shared by every test, every pytest-xdist worker and every process a test starts
(they inherit the environment), and removed at the end. A program that several tests compile
-- the same network and recipe trained by the CLI, resumed, killed and resumed -- is compiled
once, and no test writes to the user's own cache (~/.cache/archc/xla).

Under pytest-xdist (the README's `pytest -q -n auto`) the workers share the machine's cores:
each worker, and every process a test starts, uses its share of threads, since XLA:CPU's and
torch's pools sized for the whole machine in every worker only contend. On the 2-core CI
machine one thread per XLA computation is also faster on its own (a train step of sqnxt
-D stages=[1,1,1,1]: 0.18 s single-threaded vs 0.22 s with two threads).
"""
from __future__ import annotations

import os
import shutil
import tempfile

if "ARCHC_TEST_SESSION" not in os.environ:   # the controller, or a run without workers
    os.environ["ARCHC_TEST_SESSION"] = tempfile.mkdtemp(prefix="archc-tests-")  # mode 0700
    _OWNER = True
else:
    _OWNER = False
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(os.environ["ARCHC_TEST_SESSION"], "xla")

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 1) // WORKERS)

if WORKERS > 1:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(THREADS))
    if THREADS == 1 and "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false").strip()


def pytest_unconfigure(config):
    if _OWNER and not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ["ARCHC_TEST_SESSION"], ignore_errors=True)
