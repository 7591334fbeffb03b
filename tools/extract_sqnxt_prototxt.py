"""Extract the layer data of the authors' SqueezeNext ImageNet prototxts (public GitHub
repository amirgholami/SqueezeNext, BSD licence) into tests/data/sqnxt_imagenet/, the
reference of tests/test_sqnxt_imagenet.py:

    git clone https://github.com/amirgholami/SqueezeNext /tmp/sqnxt
    python tools/extract_sqnxt_prototxt.py /tmp/sqnxt [COMMIT]

For each <variant>/train_val.prototxt, one TSV row per layer of the network (the data,
accuracy and loss layers dropped), in file order: name, type, bottoms (comma-separated),
top, and the layer's parameters as key=value (convolution_param, pooling_param,
inner_product_param, eltwise_param, scale_param, batch_norm_param; nested fillers
dropped). In-place layers (BatchNorm, Scale, ReLU) keep their rows: their top is their
bottom. The repository's LICENSE is copied
next to the files, as its terms ask.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

VARIANTS = ["1.0-SqNxt-23", "2.0-SqNxt-23", "1.0-SqNxt-23v5", "2.0-SqNxt-23v5",
            "1.0-G-SqNxt-23"]
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "sqnxt_imagenet"
SKIP = {"Data", "Accuracy", "SoftmaxWithLoss"}
PARAMS = ("convolution_param", "pooling_param", "inner_product_param", "eltwise_param",
          "scale_param", "batch_norm_param")


def parse(text: str) -> list:
    """A prototxt as nested [(key, value or [...])] lists."""
    toks = re.findall(r'"[^"]*"|[{}]|[A-Za-z_][\w.]*\s*:|[^\s{}"]+', text)
    pos = 0

    def block():
        nonlocal pos
        items = []
        while pos < len(toks):
            t = toks[pos]
            if t == "}":
                pos += 1
                return items
            key = t.rstrip(":").strip()
            pos += 1
            if toks[pos] == "{":
                pos += 1
                items.append((key, block()))
            else:
                items.append((key, toks[pos].strip('"')))
                pos += 1
        return items
    return block()


def rows(text: str) -> list[str]:
    out = []
    for key, layer in parse(text):
        if key != "layer":
            continue
        get = dict((k, v) for k, v in layer if not isinstance(v, list))
        if get["type"] in SKIP:
            continue
        bottoms = ",".join(v for k, v in layer if k == "bottom")
        params = []
        for k, v in layer:
            if k in PARAMS:
                params += [f"{pk}={pv}" for pk, pv in v if not isinstance(pv, list)]
        out.append("\t".join([get["name"], get["type"], bottoms, get["top"], " ".join(params)]))
    return out


def main(repo: str, commit: str | None = None) -> None:
    commit = commit or subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"],
                                      capture_output=True, text=True).stdout.strip()
    OUT.mkdir(parents=True, exist_ok=True)
    for v in VARIANTS:
        text = (Path(repo) / v / "train_val.prototxt").read_text()
        header = [f"# {v}/train_val.prototxt of https://github.com/amirgholami/SqueezeNext at "
                  f"{commit} (BSD licence, LICENSE here); extracted by "
                  "tools/extract_sqnxt_prototxt.py", "# name\ttype\tbottoms\ttop\tparams"]
        (OUT / f"{v}.tsv").write_text("\n".join(header + rows(text)) + "\n")
    shutil.copy(Path(repo) / "LICENSE", OUT / "LICENSE")


if __name__ == "__main__":
    main(*sys.argv[1:3])
