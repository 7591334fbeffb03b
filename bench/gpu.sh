#!/usr/bin/env bash
# The GPU measurements of issue 7, ready to run on a lent GPU machine (the `device` tool).
#
# That machine has jax, flax, optax, orbax, torch, matplotlib, tqdm and pillow but not lark and
# no internet. Prepare here, once, in the repository root (/.whl/ and /data/ are git-ignored):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp -d .whl lark==1.3.1
#   mkdir -p data && cp ../shared/data/cifar10/cifar10-jpeg.tar.xz data/
#
# then run (carry .whl and data; everything written to $OUT comes back):
#
#   device run: carry [".whl", "data"], command "bash bench/gpu.sh speed"     (about 5 min)
#   device run: carry [".whl", "data"], command "bash bench/gpu.sh train-t5"  (one network;
#   device run: carry [".whl", "data"], command "bash bench/gpu.sh train-10"   10 min at most)
#
# speed: bench/train_speed.py, SqueezeNext-23 1x (stages [6,6,8,1]), bf16 and fp32, JAX vs
#        torch eager / channels_last / torch.compile; JSON and tables to $OUT.
# train-t5 / train-10: SE-SqueezeNext as in Table V ([1,2,8,1]) / SE-SqueezeNext-10-1.0x
#        (the default [1,2,4,1]) with the papers' 200-epoch recipe in bf16; metrics to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/archc-gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"

case "${1:-speed}" in
speed)
    for prec in bf16 fp32; do
        python3 bench/train_speed.py sqnxt --precision "$prec" --batch 512 --steps 50 \
            --repeats 5 --json "$OUT/speed_sqnxt23_${prec}.json" | tee "$OUT/speed_sqnxt23_${prec}.md"
    done
    ;;
train-t5|train-10)
    # one network a call: a device command may run 10 minutes at most
    if [ "$1" = train-t5 ]; then name=se_sqnxt_t5; defs=(-D 'stages=[1,2,8,1]'); else
        name=se_sqnxt_10; defs=(); fi
    python3 -m archc train se_sqnxt "${defs[@]}" --data data/cifar10-jpeg.tar.xz \
        --precision bf16 --no-progress --out "runs/$name" | tee "$OUT/train_$name.log"
    cp "runs/$name/metrics.jsonl" "$OUT/metrics_$name.jsonl"
    cp "runs/$name/summary.json" "$OUT/summary_$name.json"
    cp "runs/$name/curves.png" "$OUT/curves_$name.png"
    ;;
*)
    echo "usage: bash bench/gpu.sh speed|train-t5|train-10" >&2
    exit 2
    ;;
esac
