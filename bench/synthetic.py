"""Synthetic .arch sources for benchmarks: large networks written in the language itself."""
from __future__ import annotations


def sqnxt_chain(blocks: int = 1000, resolution: int = 8, channels: int = 32) -> str:
    """`blocks` SqueezeNext blocks (std/sqnxt.arch) in one loop, at a small resolution.

    Every block keeps its channels and stride 1, so each one adds 17 primitive layers
    (5 conv_bn = 15, add, activation): 1,000 blocks give a graph of about 17,000 nodes.
    """
    return f"""import "std/sqnxt.arch"

network Synthetic(blocks: int = {blocks}) {{
    x = input(3, {resolution}, {resolution})
    x = x -> stem: conv({channels}, kernel=3, padding=1) -> bn: bn -> act: relu
    stage: for b in range(blocks) {{
        x = block: sqnxt_block(x, {channels})
    }}
    return x -> pool: global_avgpool -> flatten: flatten -> fc: linear(10)
}}
"""
