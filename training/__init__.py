"""Training (`archc train`): the recipe, data sets, run folders and the two loops.

    api.py         a run from start to end (archc.train() and `archc train` call it): the
                   packages it needs, the run folder, in memory or streamed, the loop
    options.py     TrainOptions (every keyword but the recipe), and how an error names an
                   option: `devices=` from Python, `--devices` from the command line
    recipe.py      Recipe: the papers' CIFAR-10 recipe and its options; the LR schedule
    data.py        image folders, tar archives and CIFAR-10 binaries, decoded once
    cache.py       the decoded-data cache (.npy in the user's cache folder) and its lock
    norm.py        the input normalisation: the training split's per-channel mean and std
    cifar100.py    CIFAR-100's binary version;  tiny_imagenet.py  Tiny ImageNet's folder
    stream.py      Grain pipeline for image folders that do not fit (ImageNet transforms)
    stream_loop.py the JAX loop over streamed batches
    distributed.py the device mesh (data parallel) and jax.distributed for several hosts
    run_dir.py     the run folder (metrics, curves, checkpoints, summary) and the epoch driver
    jax_loop.py    the JAX loop (jitted steps, Orbax checkpoints)
    torch_loop.py  the torch loop (the same recipe; needs neither jax nor optax)

The loops train and evaluate on a network's FIRST output: a network returning
`outputs(logits=..., aux=...)` (a dict at run time) is trained on its first entry's
cross-entropy, its other outputs are computed and ignored (docs/training.md).
"""


def first_output(y):
    """The output the loops use: the network's value, or the first of its named outputs."""
    return next(iter(y.values())) if isinstance(y, dict) else y
