"""How fast is archc? (docs/benchmarks.md records the numbers.)

(a) whole-process wall time of `archc analyze se_sqnxt.arch` (table and --format json):
    the median of N subprocess runs of the installed console script;
(b) in-process time to parse + elaborate + analyse a synthetic 1,000-block network
    (bench/synthetic.py), median of N runs after one warm-up run.

Targets: (a) <= 0.5 s, (b) <= 2 s.  This is a benchmark, not a test: it prints numbers
and exits 0 either way.

    python bench/analyze_speed.py [--runs 7] [--blocks 1000] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import sqnxt_chain  # noqa: E402


def _console_script() -> list[str]:
    """The real `archc` entry point next to this interpreter (not a pyenv shim)."""
    cand = Path(sys.executable).with_name("archc")
    if cand.is_file():
        return [str(cand)]
    found = shutil.which("archc")
    return [found] if found else [sys.executable, "-m", "archc"]


def wall(cmd: list[str], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def in_process(text: str, runs: int) -> tuple[float, list[float], dict]:
    import archc
    from archc.compiler import analyze, load_program
    from archc.compiler._loader import build

    def once():
        t0 = time.perf_counter()
        prog = load_program(source=text, filename="synthetic.arch")
        t1 = time.perf_counter()
        net = build(prog)
        t2 = time.perf_counter()
        a = analyze(net)
        t3 = time.perf_counter()
        return t3 - t0, {"parse": t1 - t0, "elaborate": t2 - t1, "analyze": t3 - t2,
                         "layers": a.totals["layers"]}

    once()  # warm-up: grammar construction and imports are not part of (b)
    results = [once() for _ in range(runs)]
    times = [r[0] for r in results]
    med = statistics.median(times)
    phases = min(results, key=lambda r: abs(r[0] - med))[1]
    assert archc  # imported for its side effect of loading the package once
    return med, times, phases


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, nproc {os.cpu_count()}, Python {platform.python_version()} "
            f"({platform.python_implementation()}), {platform.system()} {platform.release()}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--blocks", type=int, default=1000)
    ap.add_argument("--profile", action="store_true",
                    help="also print the top cProfile entries of (b)")
    args = ap.parse_args(argv)

    print("machine:", machine())
    cli = _console_script()
    print("console script:", " ".join(cli))
    for extra in ([], ["--format", "json"]):
        cmd = cli + ["analyze", "se_sqnxt.arch"] + extra
        med, ts = wall(cmd, args.runs)
        verdict = "ok" if med <= 0.5 else "MISSED"
        print(f"(a) {' '.join(['archc', 'analyze', 'se_sqnxt.arch'] + extra):<40} median "
              f"{med:.3f} s over {args.runs} runs (min {min(ts):.3f}, max {max(ts):.3f}); "
              f"target 0.5 s: {verdict}")

    text = sqnxt_chain(args.blocks)
    med, ts, ph = in_process(text, args.runs)
    verdict = "ok" if med <= 2.0 else "MISSED"
    print(f"(b) {args.blocks}-block synthetic network, {ph['layers']} layers: median {med:.3f} s "
          f"over {args.runs} runs (min {min(ts):.3f}, max {max(ts):.3f}); target 2 s: {verdict}")
    print(f"    phases of the median run: parse {ph['parse']:.3f} s, elaborate "
          f"{ph['elaborate']:.3f} s, analyze {ph['analyze']:.3f} s")

    if args.profile:
        from archc.compiler import analyze, load_program
        from archc.compiler._loader import build
        prof = cProfile.Profile()
        prof.enable()
        analyze(build(load_program(source=text, filename="synthetic.arch")))
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
