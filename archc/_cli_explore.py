"""`archc view`, `archc sweep` and `archc inspect` (analyze --format dot is _cli.py's): the
command-line wiring of the exploration tools (presentation/view.py, presentation/dot.py,
presentation/sweep.py, presentation/sweep_report.py, training/se_activations.py).

archc/_cli.py calls `add_commands(subparsers)` once its own commands exist; errors are
ArchError (exit 2, no traceback) like every other command.
"""
from __future__ import annotations

import os
import sys

from archc._cli import _define_name, _defines, _network, add_target, check_output, cost_options
from archc._cli_deploy import add_deploy
from archc.compiler._loader import define_text
from archc._files import write_atomic
from archc.compiler import ArchError, analyze, load_program


def _check_bitops_options(args):
    if args.bits < 1 or args.bits > 64:
        raise ArchError(f"--bits must be between 1 and 64, got {args.bits}")
    if args.quant and not args.bitops:
        raise ArchError("--quant needs --bitops RULES", hint="e.g. --bitops table1 --quant int8")
    if args.bitops:
        from archc.compiler.quant import load_quant
        return load_quant(args.quant) if args.quant else None
    return None


def _write(path: str | None, text: str) -> None:
    if path:
        try:
            write_atomic(path, text)
        except OSError as e:
            raise ArchError(f"cannot write '{path}': {e.strerror}") from None
    else:
        sys.stdout.write(text)


# ---- view / analyze --format dot -----------------------------------------------------------
def cmd_view(args) -> int:
    from archc.presentation.view import render_html
    spec = _check_bitops_options(args)
    net = _network(args)
    out = args.output or os.path.splitext(os.path.basename(args.target))[0] + ".html"
    check_output(args, out)
    bits = None
    if args.bitops:
        from archc.compiler.bitops import bitops
        bits = bitops(net, args.bitops, spec, args.baseline)
    html = render_html(analyze(net, bits=args.bits), bits)
    _write(out, html)
    print(f"wrote {out} ({len(html.encode()) / 1e3:.0f} kB, {len(net.layers())} layers): "
          "open it in a browser; it needs no network")
    return 0


# ---- sweep -----------------------------------------------------------------------------------
def cmd_sweep(args) -> int:
    from archc.presentation import sweep as S
    from archc.presentation import sweep_report as R
    spec = _check_bitops_options(args)
    if not args.grid:
        raise ArchError("archc sweep needs at least one --grid name=[values]",
                        hint="e.g. --grid 'width=[0.5, 1.0, 2.0]'")
    grids = [S.parse_grid(text) for text in args.grid]
    fixed = _defines(args.define)
    x, y = args.plot_x, args.plot_y
    if args.runs is None and "acc" in (x, y):
        raise ArchError("--plot-x/--plot-y acc needs --runs DIR")
    if not args.bitops and ({x, y} & {"score", "storage_mb"}):
        raise ArchError(f"--plot-x/--plot-y {'score' if 'score' in (x, y) else 'storage_mb'} "
                        "needs --bitops RULES")
    if args.runs is not None and args.plot_y is None:
        y = "acc"
    if args.runs is not None and args.plot_x is None:
        x = "size_mb"
    x, y = x or "params", y or "macs"
    if x == y:
        raise ArchError(f"--plot-x and --plot-y are both {x}")
    program = load_program(args.target)
    args.sources = list(program.sources)
    check_output(args, args.output)
    check_output(args, args.plot, "--plot")
    if args.plot:
        R.check_plot_path(args.plot)
        if args.output and os.path.abspath(args.plot) == os.path.abspath(args.output):
            raise ArchError(f"--plot and -o are the same file '{args.output}'",
                            hint="give the plot and the table files of their own")
    try:
        result = S.run(program, grids, fixed, bits=args.bits, rules=args.bitops, spec=spec,
                       baseline=args.baseline)
    except ArchError as err:
        if err.span and err.span.file == "<-D>":
            for text in args.define or []:
                if text.split("=", 1)[0].strip() == _define_name(err):
                    err.source = define_text(text)
        raise
    if args.runs is not None:
        runs = R.load_runs(args.runs, log=lambda m: sys.stderr.write(m + "\n"))
        unmatched = R.attach_runs(result, runs, args.acc)
        for r in unmatched:
            sys.stderr.write(f"note: run {r['path']} ({r['network']}) matches no combination\n")
    front = R.front_of(result, x, y)
    text = R.render(result, args.format, front, (x, y))
    if args.plot:
        R.plot(result, args.plot, x, y, front)
    _write(args.output, text)
    sys.stderr.write(f"{len(result.rows)} combinations in {result.seconds:.2f} s"
                     + (f"; plot in {args.plot}" if args.plot else "") + "\n")
    return 0


# ---- inspect ---------------------------------------------------------------------------------
def cmd_inspect(args) -> int:
    if not args.se_activations:
        raise ArchError("archc inspect: say what to inspect", hint="--se-activations")
    import archc
    archc._require_training(args.backend or _run_backend(args.run))
    from archc.training.se_activations import inspect_run
    if args.per_class is not None and args.per_class < 1:
        raise ArchError(f"--per-class must be at least 1, not {args.per_class}")
    if args.batch_size < 1:
        raise ArchError(f"--batch-size must be at least 1, not {args.batch_size}")
    from archc._files import check_output_folder
    check_output_folder(args.out, "--out")
    inspect_run(args.run, args.data, out=args.out, per_class=args.per_class,
                backend=args.backend, arch=args.arch, batch_size=args.batch_size)
    return 0


def _run_backend(run: str) -> str:
    """The backend run.json records (torch when it cannot be read: load_run reports why)."""
    from archc._checks import run_json
    try:
        backend = run_json(os.path.join(run, "run.json")).get("backend")
    except ArchError:
        return "torch"
    return backend if backend in ("torch", "jax") else "torch"


def add_commands(sub) -> None:
    """Register view, sweep and inspect."""

    v = sub.add_parser("view", help="the network as one offline HTML page: graph, layer table",
                       description="Write a self-contained HTML page: the layer graph with "
                       "collapsible blocks, the per-layer table and totals (docs/view.md).")
    add_target(v)
    v.add_argument("-o", dest="output", metavar="OUT.html",
                   help="write here (default: the network's file name with .html)")
    cost_options(v)
    add_deploy(v)
    v.set_defaults(func=cmd_view)

    s = sub.add_parser("sweep", help="costs of every combination of a grid of parameters",
                       description="Analyse the cartesian product of --grid values (plus -D "
                       "values) and mark the Pareto front (docs/sweep.md).")
    add_target(s)
    s.add_argument("--grid", action="append", metavar="name=[v1,v2,...]",
                   help="sweep a parameter over a list literal; repeat for more parameters")
    s.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    s.add_argument("-o", dest="output", metavar="FILE", help="write the table here (default: "
                                                                "stdout)")
    cost_options(s)
    metrics = ["params", "macs", "size_mb", "peak_activations", "score", "storage_mb", "acc"]
    s.add_argument("--plot", metavar="PNG", help="plot --plot-y against --plot-x, Pareto front "
                                                 "marked (matplotlib; .png, .svg or .pdf)")
    s.add_argument("--plot-x", choices=metrics, default=None,
                   help="x axis and Pareto cost (default params; size_mb with --runs)")
    s.add_argument("--plot-y", choices=metrics, default=None,
                   help="y axis (default macs; acc with --runs)")
    s.add_argument("--runs", metavar="DIR", help="finished archc train runs (DIR or its "
                   "sub-folders): mean test accuracy per combination, plotted against cost")
    s.add_argument("--acc", choices=["best", "last"], default="best",
                   help="which test accuracy of each run (default best)")
    s.set_defaults(func=cmd_sweep)

    i = sub.add_parser("inspect", help="look inside a finished training run",
                       description="--se-activations: mean and std of every SE gate per "
                       "channel and class over the test set, as JSON and figures like Figs. 10-11 "
                       "of Nguyen et al.'s SENet report (docs/inspect.md).")
    i.add_argument("run", metavar="RUN", help="the run folder archc train wrote (--out)")
    i.add_argument("--se-activations", action="store_true",
                   help="SE gate statistics (se_activations.json, .png, _std.png)")
    i.add_argument("--data", required=True, metavar="PATH",
                   help="the data set the run was trained on (as for archc train)")
    i.add_argument("--per-class", type=int, metavar="N", help="N test images per class "
                   "(default: the run's own test split)")
    i.add_argument("--out", metavar="DIR", help="where to write (default: the run folder)")
    i.add_argument("--backend", choices=["torch", "jax"], default=None,
                   help="framework to run the network in (default: the run's)")
    i.add_argument("--arch", metavar="FILE", help="the .arch file, when the run's is not a "
                   "bundled network")
    i.add_argument("--batch-size", type=int, default=250, help="images per forward pass")
    i.set_defaults(func=cmd_inspect)
