"""Compare archc's float32 model sizes with the "Size of model (MB)" columns of seeds 000/001.

    python tools/paper_sizes.py            # prints the markdown table used in docs/paper-tables.md

Names -> settings (docs/paper-tables.md): SqueezeNext-23 v1 = sqnxt stages [6,6,8,1], v5 =
[2,4,14,1], "1x/2x" = width. SE-SqueezeNext-NN-Wx / Shallow SqueezeNext-NN-Wx: NN - 2 is the
block count and the "Resolution" column (e.g. 1241) is the stage list [1,2,4,1]; where a table
gives no Resolution, the stage list the same seed's Table II gives for that NN is used.
size = params x 4 bytes (float32); "+buf" adds the BN running mean/var (also float32).
"""
from __future__ import annotations

import io

import archc


def state_dict_bytes(an) -> int | None:
    """Bytes of torch.save() of a state_dict with archc's tensors (PyTorch naming: weight/bias,
    BN running_mean/running_var/num_batches_tracked), 1-D float32 tensors of the same numel."""
    try:
        import torch
    except ImportError:
        return None
    sd = {}
    for lc in an.layers:
        for k, n in lc.param_tensors.items():
            sd[f"{lc.name}.{k}"] = torch.zeros(n)
        if lc.op == "bn":
            c = lc.output[0]
            sd[f"{lc.name}.running_mean"] = torch.zeros(c)
            sd[f"{lc.name}.running_var"] = torch.zeros(c)
            sd[f"{lc.name}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.tell()

SQ1, SQ5 = [6, 6, 8, 1], [2, 4, 14, 1]
# (seed, table, printed model name, printed extra column, network, -D settings, paper MB)
ROWS = [
    ("000", "I", "SqueezeNext-23-1x-v1", "", "sqnxt", dict(stages=SQ1, width=1.0), 2.57),
    ("000", "I", "SqueezeNext-23-1x-v5", "", "sqnxt", dict(stages=SQ5, width=1.0), 2.57),
    ("000", "I", "SqueezeNext-23-2x-v1", "", "sqnxt", dict(stages=SQ1, width=2.0), 9.53),
    ("000", "I", "SqueezeNext-23-2x-v5", "", "sqnxt", dict(stages=SQ5, width=2.0), 9.53),
    ("000", "I", "SE-SqueezeNext-10-1.0x-v1", "", "se_sqnxt", dict(stages=[1, 2, 4, 1], width=1.0), 1.81),
    ("000", "I", "SE-SqueezeNext-10-2.0x-v1", "", "se_sqnxt", dict(stages=[1, 2, 4, 1], width=2.0), 6.59),
]
for nn, res, mb in [("06", "1111", 1.22), ("10", "1241", 1.81), ("12", "1261", 2.16),
                    ("14", "1281", 2.52), ("22", "12161", 3.94), ("23", "22161", 3.97)]:
    st = [int(res[0]), int(res[1]), int(res[2:-1]), int(res[-1])]
    ROWS.append(("000", "II", f"SE-SqueezeNext-{nn}-1x-v1", res, "se_sqnxt", dict(stages=st), mb))
for w, mb in [(0.5, 0.595), (0.6, 0.760), (0.7, 0.968), (0.8, 1.21), (0.9, 1.48), (1.0, 1.81),
              (1.2, 2.48), (1.5, 3.81), (1.7, 4.78), (2.0, 6.59)]:
    ROWS.append(("000", "III", f"SE-SqueezeNext-10-{w}x-v1", f"{w}x", "se_sqnxt",
                 dict(stages=[1, 2, 4, 1], width=w), mb))
for p in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
    ROWS.append(("000", "IV", "SE-SqueezeNext-10-1x-v1", f"p={p}", "se_sqnxt",
                 dict(stages=[1, 2, 4, 1], dropout=p), 2.16))
# seed 000 Table IV's 2.16 MB is Table II's 12-1x size: the same rows read as 12-1x
ROWS.append(("000", "IV", "(SE-SqueezeNext-10-1x-v1 read as 12-1x)", "all p", "se_sqnxt",
             dict(stages=[1, 2, 6, 1]), 2.16))
ROWS += [
    ("001", "I", "SqueezeNext-23-1x-v1", "", "sqnxt", dict(stages=SQ1, width=1.0), 2.586),
    ("001", "I", "SqueezeNext-23-1x-v5", "", "sqnxt", dict(stages=SQ5, width=1.0), 2.586),
    ("001", "I", "SqueezeNext-23-2x-v1", "", "sqnxt", dict(stages=SQ1, width=2.0), 9.525),
    ("001", "I", "SqueezeNext-23-2x-v5", "", "sqnxt", dict(stages=SQ5, width=2.0), 9.525),
]
SH = {"06": [1, 1, 1, 1], "08": [1, 2, 2, 1], "10": [1, 3, 3, 1], "12": [1, 4, 4, 1],
      "14": [1, 5, 5, 1], "16": [1, 6, 6, 1]}          # seed 001 Table II's Resolution column
for nn, w, mb in [("06", 2.0, 4.21), ("06", 2.0, 4.21), ("08", 1.0, 2.96), ("10", 1.0, 2.5863),
                  ("12", 1.0, 2.5863), ("14", 1.0, 0.370), ("16", 1.0, 1.24)]:
    res = "".join(map(str, SH[nn]))
    ROWS.append(("001", "II", f"Shallow SqueezeNext-{nn}-{w:g}x-v1", res, "shallow_sqnxt",
                 dict(stages=SH[nn], width=w), mb))
for nn, w, mb in [("06", 0.125, 0.115), ("06", 0.2, 0.141), ("06", 0.2, 0.296), ("06", 0.3, 0.196),
                  ("12", 0.4, 0.485), ("14", 0.5, 0.772), ("06", 0.6, 0.48), ("07", 0.7, 0.704),
                  ("06", 0.8, 0.774), ("06", 0.9, 0.950), ("12", 1.0, 0.557), ("06", 1.5, 2.44),
                  ("06", 2.0, 4.20)]:
    ROWS.append(("001", "III", f"Shallow SqueezeNext-{nn}-{w:g}x-v1", f"{w:g}x", "shallow_sqnxt",
                 dict(stages=SH.get(nn), width=w) if nn in SH else None, mb))
for p in (0.1, 0.2, 0.3, 0.4, 0.5):
    ROWS.append(("001", "IV", f"Shallow SqueezeNext-06-{p}x-v1", f"p={p}", "shallow_sqnxt",
                 dict(stages=SH["06"], dropout=p), 0.273))
# seed 001 Table IV's 0.273 MB is Table V's 06-0.4x size (0.2717): the same rows read as 0.4x
ROWS.append(("001", "IV", "(Shallow SqueezeNext-06-p-x read as 06-0.4x)", "all p",
             "shallow_sqnxt", dict(stages=SH["06"], width=0.4), 0.273))
for name, extra, st, w, mb in [("14-1 5x", "1 5x, 1281", [1, 2, 8, 1], 1.5, 8.72),
                               ("21-0.2x", "0.2x, 22141", [2, 2, 14, 1], 0.2, 1.814),
                               ("06-0.575x", "0 575x, 1111", [1, 1, 1, 1], 0.575, 0.449),
                               ("06-0.4x", "0.4x, 1111", [1, 1, 1, 1], 0.4, 0.2717),
                               ("09-0 5x", "0.5x. 1141", [1, 1, 4, 1], 0.5, 0.531)]:
    ROWS.append(("001", "V", f"Shallow SqueezeNext-{name}-v1", extra, "shallow_sqnxt",
                 dict(stages=st, width=w), mb))


def fmt_d(d):
    return " ".join(f"-D {k}={v}".replace(" ", "") if not isinstance(v, list) else
                    f"-D {k}=[{','.join(map(str, v))}]" for k, v in d.items())


# the paper column of docs/paper-tables.md: Chappa & El-Sharkawy, Duggal & El-Sharkawy
PAPER = {"000": "C&E", "001": "D&E"}


def main():
    print("| paper | table | model (as printed) | printed col. | archc | params | buffers "
          "| MB (1e6) | MiB | MB+buf (1e6) | torch.save MB | paper MB | paper / MB | paper / MB+buf "
          "| paper - torch.save |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for seed, table, name, extra, net, d, mb in ROWS:
        seed = PAPER[seed]
        if d is None:
            print(f"| {seed} | {table} | {name} | {extra} | (no stage list for this depth) "
                  f"| - | - | - | - | - | - | {mb} | - | - | - |")
            continue
        an = archc.analyze(net, **d)
        t = an.totals
        sd = state_dict_bytes(an)
        sd_mb = "-" if sd is None else f"{sd / 1e6:.3f}"
        diff = "-" if sd is None else f"{mb - sd / 1e6:+.3f}"
        size, sizeb = t["params"] * 4, (t["params"] + t["buffers"]) * 4
        print(f"| {seed} | {table} | {name} | {extra} | `{net} {fmt_d(d)}` | {t['params']:,} "
              f"| {t['buffers']:,} | {size / 1e6:.3f} | {size / 2**20:.3f} | {sizeb / 1e6:.3f} "
              f"| {sd_mb} | {mb} | {mb / (size / 1e6):.2f} | {mb / (sizeb / 1e6):.2f} | {diff} |")


if __name__ == "__main__":
    main()
