"""`archc compress`: Zeng et al.'s compression pipeline on the command line (docs/compression.md).

    archc compress run      NAME|FILE [-D ...] --from RUN --data PATH --out DIR [options]
    archc compress STEP     (the same arguments) for STEP in sensitivity, prune, finetune,
                            quantize, qat, score

`run` does every step in order and, run again, resumes where it stopped; a step command does
that step only (the steps before it must be done).
"""
from __future__ import annotations

STEP_HELP = {
    "run": "every step in order (resumes where it stopped): the whole pipeline",
    "sensitivity": "step 2a: per-layer sensitivity curves on a mini-train split",
    "prune": "step 2b: per-layer sparsity from the curves (or --masks), binary masks",
    "finetune": "step 3: finetune with the masks (pruned weights stay exactly zero)",
    "quantize": "step 4: fold BN, calibrate activation steps, fake-quantize",
    "qat": "step 5: quantization-aware finetuning (straight-through estimator)",
    "score": "write the .quant spec and print storage, math ops, score and accuracy",
}

# (flag, Settings field, type, help), by group
OPTIONS = {
    "sensitivity analysis (Zeng et al., sec. 2)": [
        ("--mini-per-class", "mini_per_class", int,
         ("mini-train images per class, drawn from the training split and held out of "
          "finetuning (default 100)")),
        ("--fractions", "fractions", str,
         "fractions of each layer's weights to prune: START:STOP:STEP (STOP included) or a "
         "comma-separated list such as 0.2,0.4,0.6, at most 200 (default 0.1:0.9:0.05)"),
    ],
    "pruning (one of)": [
        ("--max-drop", "max_drop", float,
         "accuracy bound = unpruned mini-train accuracy minus this many points (default 1)"),
        ("--min-accuracy", "min_accuracy", float, "the accuracy bound itself (%%)"),
        ("--target-sparsity", "target_sparsity", float,
         "the highest bound that prunes this fraction of all conv/linear weights"),
        ("--masks", "masks", str, "masks from a safetensors file instead of the analysis"),
    ],
    "finetuning with masks (sec. 4.1)": [
        ("--finetune-epochs", "finetune_epochs", int, "epochs (default 40, decay half way)"),
        ("--finetune-lr", "finetune_lr", float, "learning rate (default 1e-3)"),
        ("--finetune-gamma", "finetune_gamma", float, "decay factor (default 0.1)"),
    ],
    "quantization (sec. 3)": [
        ("--calibration-images", "calibration_images", int,
         "training images for activation calibration (default 1000)"),
        ("--method", "method", str, "activation calibration: kl (default) or max"),
        ("--tolerance", "tolerance", float, "KL tolerance (default 1.3)"),
        ("--bins", "bins", int, "KL source bins, 2^act-bits + 1 to 16384 (default 2048)"),
        ("--weight-bits", "weight_bits", int, "weight precision (default 8)"),
        ("--act-bits", "act_bits", int, "activation precision (default 8; KL: at most 10)"),
        ("--bias-bits", "bias_bits", int, "bias precision (default 16)"),
    ],
    "quantization-aware finetuning (sec. 4.1)": [
        ("--qat-epochs", "qat_epochs", int, "epochs (default 20, decay half way)"),
        ("--qat-lr", "qat_lr", float, "learning rate (default 5e-4)"),
        ("--qat-gamma", "qat_gamma", float, "decay factor (default 0.2)"),
    ],
    "scoring (sec. 5)": [
        ("--acc-bits", "acc_bits", int, "accumulator bits in the spec (default 32)"),
        ("--float-bits", "float_bits", int,
         "bits of the tensors left unquantized, in the spec (default 32)"),
        ("--rules", "rules", str, "bit-op rules: table1 (default) or official"),
        ("--baseline", "baseline", str, "score baseline: imagenet (default) or cifar100"),
    ],
}
CHOICES = {"method": ["kl", "max"], "rules": ["table1", "official"],
           "baseline": ["imagenet", "cifar100"]}


def add_commands(subparsers) -> None:
    """Add `archc compress` and its step commands to the CLI's subparsers."""
    from archc import _cli
    p = subparsers.add_parser(
        "compress", help="the MicroNet entry's compression pipeline (Zeng et al.): prune, "
                         "quantize and score a trained run",
        description="Prune (sensitivity analysis, masks, finetuning), "
        "quantize (BN folding, KL calibration, quantization-aware finetuning) and score a run "
        "of `archc train`. See docs/compression.md.")
    steps = p.add_subparsers(dest="step", required=True, metavar="STEP", parser_class=type(p))
    for step, text in STEP_HELP.items():
        sp = steps.add_parser(step, help=text, description=text)
        sp.add_argument("target", metavar="FILE|NAME", help="the trained network (as for train)")
        sp.add_argument("-D", dest="define", action="append", metavar="name=value",
                        help="network parameters, as the run was trained with")
        sp.add_argument("--from", dest="run", required=True, metavar="RUN",
                        help="the --out folder of a finished `archc train`")
        sp.add_argument("--data", required=True, metavar="PATH", help="the run's data")
        sp.add_argument("--out", required=True, metavar="DIR", help="the compression folder")
        sp.add_argument("--train-per-class", type=int, metavar="N", help="as for the run")
        sp.add_argument("--test-per-class", type=int, metavar="N", help="as for the run")
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")
        sp.add_argument("--no-cache", action="store_true", help="decode the data without cache")
        _cli.cache_option(sp)
        for group, options in OPTIONS.items():
            g = sp.add_argument_group(group)
            for flag, field, typ, helptext in options:
                g.add_argument(flag, dest=field, type=typ, default=None, help=helptext,
                               choices=CHOICES.get(field))
        sp.set_defaults(func=cmd_compress)


def settings_from(args) -> dict:
    from archc.compression.settings import parse_fractions
    given = {field: getattr(args, field) for options in OPTIONS.values()
             for _, field, _, _ in options}
    if given["fractions"] is not None:
        given["fractions"] = parse_fractions(given["fractions"])
    return given


def cmd_compress(args) -> int:
    import archc
    from archc import _cli
    archc._require_training("jax")
    _cli.use_cache_dir(args)
    from archc.compression.pipeline import compress
    net = _cli._network(args)
    step = "all" if args.step == "run" else args.step
    compress(net, args.run, args.data, args.out, step, train_per_class=args.train_per_class,
             test_per_class=args.test_per_class, cache=not args.no_cache,
             progress=not args.no_progress, **settings_from(args))
    return 0
