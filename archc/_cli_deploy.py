"""`--deploy` of `archc analyze`, `build` and `view` (docs/reparam.md): the option, the deployed
network, and the training form's weights (`build --deploy --weights`) carried into it."""
from __future__ import annotations

import os

from archc.compiler import ArchError


def add_deploy(sp) -> None:
    """--deploy (analyze, build, view)."""
    sp.add_argument("--deploy", action="store_true",
                    help="the deployed form: each sum of linear branches of one input merged "
                         "into one conv, each BN after a conv folded (docs/reparam.md)")


def deployed(args, net):
    """The network the command works on: `net`, or with --deploy its deployed form (the
    training form kept as args.trained, for --weights)."""
    args.trained = net
    if not getattr(args, "deploy", False):
        return net
    from archc.compiler.reparam import deploy
    return deploy(net)


def deployed_weights(args) -> dict:
    """--deploy --weights: the training form's weights carried into the deployed network."""
    from archc.backends import reparam_weights, weights
    return reparam_weights.deploy_state_dict(args.trained, weights.load(args.weights))[1]


def write_deployed_weights(args, check_output, wrote) -> None:
    """build --backend torch|jax --deploy --weights: the deployed weights beside -o OUT, as
    OUT's name with .safetensors (torch layout)."""
    if not args.output:
        raise ArchError("--deploy --weights writes a module and its weights: give -o FILE",
                        hint="-o net.py (the weights go to net.safetensors)")
    from archc.backends import weights
    path = os.path.splitext(args.output)[0] + ".safetensors"
    check_output(args, path, "the weights output")
    weights.save(path, deployed_weights(args))
    wrote(args, f"{path} (the deployed weights, torch layout)")
