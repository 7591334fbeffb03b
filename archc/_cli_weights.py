"""`archc weights import`: a checkpoint of another implementation of a network (timm,
torchvision, PyTorch code; .safetensors or .pth/.pt) as archc weights (model.safetensors in
the torch layout, what `archc train --init-from` and `archc build --weights` read)."""
from __future__ import annotations

import os
import sys

from archc.compiler import ArchError

from ._cli import _network, add_target, check_output


def cmd_weights_import(args) -> int:
    from archc._files import check_output_path
    if not args.output.endswith(".safetensors"):
        raise ArchError(f"-o '{args.output}': archc writes weights as safetensors",
                        hint="give -o a name ending in .safetensors")
    check_output_path(args.output)
    net = _network(args)
    check_output(args, args.output)
    from archc._files import check_not_input
    check_not_input(args.output, [("the checkpoint", args.checkpoint)])
    from archc.backends import weights
    from archc.backends.import_weights import SAFETENSORS_ORDER, match
    state = weights.read_checkpoint(args.checkpoint)
    try:
        tensors = match(net, state)
    except ArchError as err:
        if args.checkpoint.lower().endswith(".safetensors"):
            err.hint = f"{err.hint}; {SAFETENSORS_ORDER}" if err.hint else SAFETENSORS_ORDER
        raise
    weights.save(args.output, tensors, metadata={"network": net.name,
                                                 "imported_from": os.path.basename(
                                                     args.checkpoint)[:200]})
    count = sum(1 for k in tensors if not k.endswith("num_batches_tracked"))
    sys.stderr.write(f"wrote {args.output} ({net.name}: {count} tensors from "
                     f"{args.checkpoint})\n")
    return 0


def add_commands(sub) -> None:
    """Register `weights import`."""
    w = sub.add_parser("weights", help="weights from elsewhere: import a checkpoint of "
                       "another implementation (timm, torchvision, PyTorch)")
    wsub = w.add_subparsers(dest="weights_command", required=True, parser_class=type(w))
    i = wsub.add_parser("import", help="a .safetensors or .pth/.pt state dict as archc weights",
                        description="Match a state dict of another implementation of the "
                        "network by structure (tensor order and shapes) and write archc's "
                        "weights (torch layout, safetensors). A .pth is read with "
                        "weights_only=True: tensors only, never code. See docs/weights.md.")
    add_target(i)
    i.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="the state dict: .safetensors, .pth or .pt")
    i.add_argument("-o", dest="output", metavar="OUT.safetensors", required=True,
                   help="write archc's weights here")
    i.set_defaults(func=cmd_weights_import)
