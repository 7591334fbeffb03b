"""The `archc` command line.

Exit codes: 0 success, 2 user error (bad .arch input, bad option), 70 internal error.
User errors print `file:line:col: error: ...` with the source line and a caret; never
a traceback (set ARCHC_DEBUG=1 to see one for internal errors).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback

from archc._cli_deploy import add_deploy, deployed, deployed_weights, write_deployed_weights
from archc.compiler import ArchError, analyze, bundled_networks, load_program, parse_define
from archc.compiler._loader import build, define_text
from archc.compiler.errors import did_you_mean

EXIT_USER, EXIT_INTERNAL = 2, 70


class _HelpFormatter(argparse.HelpFormatter):
    """--help names every option's default: appended as "(default: X)" unless the help text
    already says it, or there is none to say (None, False: the option is off or not given)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or "default" in text
                or action.default in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)".lstrip()


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # argparse errors are user errors: exit 2, no traceback
        self.print_usage(sys.stderr)
        sys.stderr.write(f"archc: error: {message}\n")
        raise SystemExit(EXIT_USER)


def _defines(values) -> dict:
    out = {}
    for text in values or []:
        name, value, span = parse_define(text)
        if name in out:
            raise ArchError(f"-D {name} is given twice", span, source=define_text(text))
        out[name] = (value, span)
    return out


def _network(args):
    program = load_program(args.target)
    args.sources = list(program.sources)  # the .arch file and its imports (check_output)
    for note in program.notes:
        sys.stderr.write(f"note: {note}\n")
    overrides = _defines(args.define)
    try:
        net = build(program, overrides)
    except ArchError as err:
        if err.span and err.span.file == "<-D>":
            for text in args.define or []:
                if text.split("=", 1)[0].strip() == _define_name(err):
                    err.source = define_text(text)
        raise
    return deployed(args, net)


def check_output(args, path, flag: str = "-o") -> None:
    """Refuse an output that is one of the command's inputs: the .arch file and its imports
    (once _network has loaded them), --weights, --quant, --masks."""
    from archc._files import check_not_input
    inputs = [("the input", p) for p in getattr(args, "sources", None) or [args.target]]
    inputs += [(f"--{k}", getattr(args, k, None)) for k in ("weights", "quant", "masks")]
    check_not_input(path, inputs, flag)


def _define_name(err: ArchError) -> str:
    msg = err.message
    if "parameter '" in msg:
        return msg.split("parameter '", 1)[1].split("'", 1)[0]
    return ""


def cmd_analyze(args) -> int:
    from archc.presentation.report import render
    net = _network(args)
    only = None
    if args.only:
        from archc.compiler import ops
        only = {o.strip() for o in args.only.split(",") if o.strip()}
        for o in only:
            if o not in ops.REGISTRY:
                raise ArchError(f"--only: unknown op '{o}'", None,
                                hint=did_you_mean(o, ops.REGISTRY) or "ops: " + ", ".join(ops.REGISTRY))
    if args.bits < 1 or args.bits > 64:
        raise ArchError(f"--bits must be between 1 and 64, got {args.bits}")
    if args.quant and not args.bitops:
        raise ArchError("--quant needs --bitops RULES", None, hint="e.g. --bitops table1 --quant int8")
    if args.format == "dot":
        if args.bitops:
            raise ArchError("--format dot shows the layer graph; it does not take --bitops",
                            hint="use --format table/markdown/csv/json with --bitops")
        from archc.presentation.dot import to_dot
        sys.stdout.write(to_dot(analyze(net, bits=args.bits)))
        return 0
    if args.bitops:
        from archc.compiler.bitops import bitops
        from archc.compiler.quant import load_quant
        from archc.presentation.bitops_report import render as render_bitops
        spec = load_quant(args.quant) if args.quant else None
        r = bitops(net, args.bitops, spec, args.baseline)
        sys.stdout.write(render_bitops(r, args.format))
        return 0
    a = analyze(net, bits=args.bits)
    sys.stdout.write(render(a, args.format, folded=not args.no_fold, only=only))
    return 0


def cmd_check(args) -> int:
    net = _network(args)
    outs = []
    for name, node in net.output_list():
        c, h, w = net.node(node)["shape"]
        outs.append(("" if name is None else f"{name} ") + f"{h}x{w}x{c}")
    print(f"ok: {net.name}: {len(net.layers())} layers, output{'s' if len(outs) > 1 else ''} "
          f"{', '.join(outs)} (HxWxC)")
    return 0


def cmd_build(args) -> int:
    from archc import _backend
    if args.backend == "onnx" or (args.weights and not args.deploy) or args.fold_bn:
        return _build_onnx(args)
    backend = _backend(args.backend)
    net = _network(args)
    check_output(args, args.output)
    if args.weights:   # --deploy: the deployed weights beside the module
        write_deployed_weights(args, check_output, _wrote)
    if args.output:
        src = backend.write_source(net, args.output, init=args.init)
        _wrote(args, f"{args.output} ({src.count(chr(10))} lines, {net.name}, {args.backend})")
    else:
        sys.stdout.write(backend.build_source(net, init=args.init))
    return 0


def _build_onnx(args) -> int:
    if args.backend != "onnx":
        raise ArchError("--weights and --fold-bn are options of --backend onnx")
    if not args.output:
        raise ArchError("--backend onnx writes a binary file: give -o FILE", hint="-o net.onnx")
    from archc.backends import onnx_backend
    net = _network(args)
    check_output(args, args.output)
    tensors = deployed_weights(args) if args.deploy and args.weights else args.weights
    model = onnx_backend.write_model(net, args.output, weights=tensors,
                                     fold_bn=args.fold_bn, init=args.init)
    _wrote(args, f"{args.output} ({model.ByteSize() / 1e3:,.0f} kB, {net.name}, onnx, "
                 f"{'weights from ' + args.weights if args.weights else 'initial weights'})")
    return 0


def _wrote(args, what: str) -> None:
    """What `archc build` wrote, on stderr (stdout may be the module itself); --quiet: nothing."""
    if not args.quiet:
        sys.stderr.write(f"wrote {what}\n")


def cmd_list(args) -> int:
    from archc.compiler import load_program as lp
    for name in bundled_networks():
        prog = lp(name)
        d = prog.network_def
        params = ", ".join(p.name for p in d.params)
        print(f"{name:<18} {d.name}({params})")
        doc = prog.doc()
        if doc:
            line = doc if len(doc) <= 110 else doc[:107].rsplit(" ", 1)[0] + " ..."
            print(f"{'':<18} {line}")
    return 0


# `archc train` options that make the Recipe (training/recipe.py): (flag, field, type, help)
TRAIN_OPTIONS = [
    ("--epochs", "epochs", int, "epochs to train (default 200, the papers')"),
    ("--batch-size", "batch_size", int, "images per step (default 128)"),
    ("--lr", "lr", float, "peak learning rate (default 0.1)"),
    ("--schedule", "schedule", str, "step (default: x gamma after each milestone), cosine, "
                                    "onecycle, linear (decay to 0) or constant"),
    ("--milestones", "milestones", str, "step-schedule epochs, e.g. 60,120,150,180 (default: "
                                        "those of 200 epochs, scaled to --epochs)"),
    ("--gamma", "gamma", float, "step-schedule factor (default 0.2)"),
    ("--warmup-epochs", "warmup_epochs", float, "linear warm-up from 0 (default 0)"),
    ("--momentum", "momentum", float, "SGD momentum (default 0.9)"),
    ("--weight-decay", "weight_decay", float, "L2 weight decay (default 5e-4)"),
    ("--label-smoothing", "label_smoothing", float, "label smoothing (default 0)"),
    ("--precision", "precision", str, "fp32 (default) or bf16 compute with fp32 master weights"),
    ("--seed", "seed", int, "initialisation, data order, augmentation and dropout (default 0)"),
    ("--eval-batch-size", "eval_batch_size", int, "test images per eval step (default 500)"),
]


def _recipe(args):
    from archc.training.recipe import RECIPES, Recipe
    from archc.training.run_dir import saved_run
    given = {field: getattr(args, field) for _, field, _, _ in TRAIN_OPTIONS}
    given["augment"], given["nesterov"] = args.augment, args.nesterov
    base = {}
    saved = saved_run(_train_out(args)) if args.resume else None
    if saved:  # options not given: the run's own, valid on their own
        base = dict(saved.get("recipe") or {})
        try:
            Recipe.from_dict({**RECIPES["paper"], **base})
        except ArchError as err:
            where = os.path.join(_train_out(args), "run.json")
            raise ArchError(f"{where}: recipe: {err.message}", hint=err.hint) from None
    if given["milestones"] is not None:
        try:
            given["milestones"] = tuple(int(m) for m in given["milestones"].split(",") if m)
        except ValueError:
            raise ArchError(f"--milestones '{given['milestones']}' is not a comma-separated "
                            "list of epochs", hint="e.g. --milestones 60,120,150,180") from None
    fields = {**RECIPES[args.recipe or "paper"], **base,
              **{k: v for k, v in given.items() if v is not None}}
    return Recipe.from_dict(fields)


def _train_out(args) -> str:
    if args.out:
        return args.out
    stem = os.path.splitext(os.path.basename(args.target))[0]
    return os.path.join("runs", f"{stem}-{args.backend}")


def use_cache_dir(args) -> None:
    """--cache-dir DIR: decoded data sets are cached there (training/data.py reads
    $ARCHC_CACHE_DIR, which this sets for this process and any it starts)."""
    if args.cache_dir:
        os.environ["ARCHC_CACHE_DIR"] = os.path.abspath(os.path.expanduser(args.cache_dir))


def cache_option(sp) -> None:
    """--cache-dir of the commands that decode a data set (train, compress)."""
    sp.add_argument("--cache-dir", metavar="DIR",
                    help="cache decoded data sets here (default: $ARCHC_CACHE_DIR, else "
                         "$XDG_CACHE_HOME/archc/data or ~/.cache/archc/data; never next to "
                         "the data unless DIR is there)")


def cmd_train(args) -> int:
    use_cache_dir(args)
    from archc.training import api
    api.require_packages(args.backend)
    recipe = _recipe(args)
    from archc.training.recipe import require_backend
    require_backend(recipe, args.backend)
    net = _network(args)
    # the options' names are the flags' dests; not given (None): the defaults, and with
    # --resume the run's own subset
    given = {k: getattr(args, k) for k in ("train_per_class", "test_per_class", "val_split",
                                           "devices", "coordinator", "num_processes",
                                           "process_id", "stream", "loader_workers",
                                           "init_from")
             if getattr(args, k) is not None}
    options = api.TrainOptions(backend=args.backend, out=_train_out(args), resume=args.resume,
                               progress=not args.no_progress, cache=not args.no_cache,
                               coarse_labels=args.coarse_labels, **given)
    api.train(net, args.data, recipe, options, spelling="flag")
    return 0


def add_target(sp) -> None:
    """The positional FILE|NAME and -D of every command that takes a network."""
    sp.add_argument("target", metavar="FILE|NAME", help="an .arch file, or a bundled network name")
    sp.add_argument("-D", dest="define", action="append", metavar="name=value",
                    help="set a network parameter; values use the language's literal syntax")


def cost_options(sp) -> None:
    """--bits, --bitops, --quant, --baseline (analyze, view, sweep)."""
    sp.add_argument("--bits", type=int, default=32, help="parameter precision for the size total")
    sp.add_argument("--bitops", choices=["table1", "official"], metavar="RULES",
                    help="bit-op storage/operations table and MicroNet score: table1 "
                         "(Zeng et al.'s Table 1) "
                         "or official (docs/bitops.md)")
    sp.add_argument("--quant", metavar="SPEC", help="precision/sparsity spec (.quant file or "
                    "bundled name); without it everything is float32 and dense")
    sp.add_argument("--baseline", choices=["imagenet", "cifar100"], default="imagenet",
                    help="the score's reference network (with --bitops)")


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="archc", description="Architecture DSL and compiler for efficient CNNs.")
    p.add_argument("--version", action="version", version="archc 0.1.0")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    a = sub.add_parser("analyze", help="per-layer shapes, parameters, MACs and memory")
    add_target(a)
    a.add_argument("--format", choices=["table", "markdown", "csv", "json", "dot"], default="table",
                   help="dot: the layer graph for Graphviz, blocks as clusters")
    a.add_argument("--no-fold", action="store_true", help="one row per layer; do not fold repeats")
    a.add_argument("--only", metavar="OPS", help="table rows for these ops only, e.g. conv,linear")
    cost_options(a)
    add_deploy(a)
    a.set_defaults(func=cmd_analyze)

    c = sub.add_parser("check", help="parse, elaborate and shape-check only")
    add_target(c)
    c.set_defaults(func=cmd_check)

    b = sub.add_parser("build", help="lower to a framework module (one Python source file) or "
                       "to an ONNX model")
    add_target(b)
    b.add_argument("--backend", choices=["torch", "jax", "onnx"], default="torch",
                   help="torch: a PyTorch nn.Module source file; jax: a Flax NNX module; onnx: "
                        "an ONNX model file (needs -o)")
    b.add_argument("-o", dest="output", metavar="OUT", help="write here (default: stdout)")
    b.add_argument("-q", "--quiet", action="store_true",
                   help="do not report what was written (on stderr)")
    b.add_argument("--init", metavar="SCHEME",
                   help="weight initialisation, overriding the network's `init` parameter")
    b.add_argument("--weights", metavar="FILE", help="onnx: trained weights, a safetensors file "
                   "in the torch layout (archc train's model.safetensors); with --deploy, the "
                   "training form's, converted (torch, jax: written beside -o as .safetensors)")
    b.add_argument("--fold-bn", action="store_true",
                   help="onnx: fold BatchNormalization into the conv or linear layer before it")
    add_deploy(b)
    b.set_defaults(func=cmd_build)

    t = sub.add_parser("train", help="train on CIFAR-10-style data (JAX by default, or torch)",
                       description="Train a network with the papers' recipe (SGD, Nesterov, "
                       "step decay) or another schedule; writes metrics.jsonl, curves.png, "
                       "checkpoints and the final weights to --out. See docs/training.md.")
    add_target(t)
    t.add_argument("--data", required=True, metavar="PATH",
                   help="image folder (train/<class>/*, test/<class>/*), a .tar/.tar.xz of it, "
                        "or the CIFAR-10 binary batches")
    t.add_argument("--backend", choices=["jax", "torch"], default="jax",
                   help="framework to train in")
    t.add_argument("--recipe", choices=["paper", "fast"], default=None,
                   help="paper (default: the papers' 200-epoch recipe) or fast (time to "
                        "accuracy on a GPU); the options below override its values")
    for flag, field, typ, text in TRAIN_OPTIONS:
        kw = {"choices": None}
        if field == "schedule":
            kw["choices"] = ["step", "cosine", "onecycle", "linear", "constant"]
        if field == "precision":
            kw["choices"] = ["fp32", "bf16"]
        t.add_argument(flag, dest=field, type=typ, default=None, help=text, **kw)
    t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop (4-pixel padding) and horizontal flip (default: on)")
    t.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help="Nesterov momentum (default: on)")
    t.add_argument("--train-per-class", type=int, metavar="N",
                   help="train on a class-balanced random subset of N images per class")
    t.add_argument("--test-per-class", type=int, metavar="N",
                   help="test on a class-balanced random subset of N images per class")
    t.add_argument("--val-split", type=int, metavar="N",
                   help="validate on N training images held out at random (Nguyen et al. hold "
                        "out 2000), "
                        "not on the test split")
    t.add_argument("--coarse-labels", action="store_true",
                   help="CIFAR-100: train on the 20 coarse classes instead of the 100 fine ones")
    t.add_argument("--devices", type=int, metavar="N",
                   help="JAX: train data parallel on N devices of each host (default: all); "
                        "--batch-size is the global batch")
    t.add_argument("--coordinator", metavar="HOST:PORT",
                   help="JAX multi-host: the jax.distributed coordinator (process 0's address; "
                        "default $JAX_COORDINATOR_ADDRESS)")
    t.add_argument("--num-processes", type=int, metavar="N", help="JAX multi-host: processes")
    t.add_argument("--process-id", type=int, metavar="I",
                   help="JAX multi-host: this process's index, 0..N-1")
    t.add_argument("--stream", choices=["auto", "on", "off"], default=None,
                   help="JAX: read an image folder with Grain as training goes instead of "
                        "holding it in memory (auto, the default: when it does not fit, or "
                        "its images differ in size)")
    t.add_argument("--loader-workers", type=int, metavar="N",
                   help="JAX, streamed data: decoding processes (default 0: Grain's threads "
                        "in this process)")
    t.add_argument("--out", metavar="DIR", help="run folder (default runs/<name>-<backend>)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    t.add_argument("--init-from", metavar="FILE",
                   help="start from these weights instead of the initialisation: a safetensors "
                        "file in the torch layout (a run's model.safetensors, or `archc weights "
                        "import`'s output)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--no-cache", action="store_true", help="decode the data without the .npy cache")
    cache_option(t)
    t.set_defaults(func=cmd_train)

    ls = sub.add_parser("list", help="the bundled networks and their parameters")
    ls.set_defaults(func=cmd_list)
    from archc._cli_explore import add_commands  # view, sweep, inspect
    add_commands(sub)
    from archc._cli_compress import add_commands  # Zeng et al.'s compression pipeline
    add_commands(sub)
    from archc._cli_weights import add_commands  # weights import
    add_commands(sub)
    return p


def _terminate(signum, frame):
    """SIGTERM ends archc like Ctrl-C does: through Python, so that no temporary file is
    left behind (archc/_files.py)."""
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except ArchError as err:
        sys.stderr.write(err.format() + "\n")
        return EXIT_USER
    except KeyboardInterrupt:
        if getattr(args, "command", None) == "train":
            sys.stderr.write("archc: interrupted; the last finished epoch is checkpointed: "
                             "rerun with --resume to continue\n")
        elif getattr(args, "command", None) == "compress":
            sys.stderr.write("archc: interrupted; finished steps are kept: run the same "
                             "command again to go on where it stopped\n")
        else:
            sys.stderr.write("archc: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # noqa: BLE001 - report internal errors without a traceback
        if os.environ.get("ARCHC_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(f"archc: internal error: {type(err).__name__}: {err}\n"
                         "This is a bug in archc; rerun with ARCHC_DEBUG=1 for details.\n")
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
