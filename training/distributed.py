"""Data-parallel placement for the JAX loop: one jitted step for 1 or N devices, 1 or N hosts.

`Placement` is a 1-D `jax.sharding.Mesh` ("data") over the devices used: `--devices N` of each
process's local devices (default: all), across every process of a `jax.distributed` run. The
parameters, optimizer state and batch-norm statistics are replicated (`NamedSharding(mesh,
P())`); the batch is sharded along the mesh (`P("data")`) by a sharding constraint inside the
jitted step. XLA's SPMD partitioner (GSPMD) then splits the forward and backward pass by the
batch and inserts the all-reduces: the gradient is the global batch's mean gradient and the
batch-norm statistics are those of the global batch (synchronous data parallel), so N devices
compute what one device computes for the same global batch, to float rounding.

`initialize()` starts `jax.distributed` for a multi-host run, from flags or from what JAX reads
itself ($JAX_COORDINATOR_ADDRESS, cluster environments such as SLURM or Open MPI).
"""
from __future__ import annotations

import os

import numpy as np

from archc._checks import address
from archc.compiler import ArchError

from .options import Placeholder, option

AXIS = "data"


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """jax.distributed.initialize when a multi-process run is asked for (a flag, or
    $JAX_COORDINATOR_ADDRESS); True if it was started. Must run before JAX's first
    computation."""
    given = (coordinator, num_processes, process_id)
    if all(v is None for v in given) and not os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return False
    if num_processes is not None and num_processes < 1:
        raise ArchError(f"{option('num_processes')} must be at least 1, not {num_processes}")
    if process_id is not None and not (0 <= process_id < (num_processes or process_id + 1)):
        raise ArchError(f"{option('process_id', process_id)} must be in "
                        f"0..{(num_processes or 1) - 1}")
    # the address is parsed here, before JAX sees it: JAX waits minutes (ignoring Ctrl-C) on
    # one it cannot use, then aborts with a C++ stack
    if coordinator is not None:
        address(coordinator, option("coordinator"))
    elif os.environ.get("JAX_COORDINATOR_ADDRESS"):
        address(os.environ["JAX_COORDINATOR_ADDRESS"], "$JAX_COORDINATOR_ADDRESS")
    import jax
    if jax.distributed.is_initialized():
        return True
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArchError(f"cannot start the multi-host run: {first[:300]}",
                        hint=f"give {option('coordinator', Placeholder('HOST:PORT'))}, "
                             f"{option('num_processes', Placeholder('N'))} and "
                             f"{option('process_id', Placeholder('I'))} (or set "
                             "JAX_COORDINATOR_ADDRESS), the same coordinator on every host") \
            from None
    return True


class Placement:
    """The mesh of the devices a run uses, and how arrays are placed on it."""

    def __init__(self, devices: int | None = None):
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        local = jax.local_device_count()
        n = local if devices is None else devices
        if not 1 <= n <= local:
            raise ArchError(f"{option('devices', devices)}: this process has {local} "
                            f"{jax.default_backend()} device(s)",
                            hint=f"choose {option('devices')} between 1 and {local}, or leave "
                                 "it out to use all")
        chosen = [d for p in range(jax.process_count())
                  for d in [e for e in jax.devices() if e.process_index == p][:n]]
        self.mesh = Mesh(np.array(chosen), (AXIS,))
        self.count = len(chosen)
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.sharded = NamedSharding(self.mesh, PartitionSpec(AXIS))

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.count:
            raise ArchError(f"{option('batch_size', batch_size)} is not a multiple of the "
                            f"{self.count} devices: each device takes an equal share of the "
                            "global batch",
                            hint=f"choose a multiple of {self.count}, or other "
                                 f"{option('devices')}")

    def outputs(self) -> dict:
        """jax.jit's keyword for a step's outputs: replicated over the mesh (on one device,
        nothing: JAX's default placement, as before data parallelism)."""
        return {"out_shardings": self.replicated} if self.count > 1 else {}

    def put(self, tree):
        """A pytree of host arrays, replicated on every device of the mesh (every process
        passes the same values, each places its own devices' copies)."""
        import jax
        if self.count == 1:
            return jax.device_put(tree)

        def one(a):
            a = np.asarray(a)
            return jax.make_array_from_callback(a.shape, self.replicated, lambda i: a[i])
        return jax.tree.map(one, tree)

    def batch(self, x):
        """Inside a jitted step: shard the leading (batch) axis across the devices."""
        import jax
        if self.count == 1 or x.shape[0] % self.count:
            return x
        return jax.lax.with_sharding_constraint(x, self.sharded)

    def host(self, tree):
        """A pytree of replicated arrays as host numpy arrays (each process's own copy)."""
        import jax
        return jax.tree.map(lambda a: np.asarray(a.addressable_data(0))
                            if isinstance(a, jax.Array) else np.asarray(a), tree)
