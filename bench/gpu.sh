#!/usr/bin/env bash
# Issue 17's GPU measurements in ONE command of at most 6 minutes (bench/gpu.sh), for a lent
# GPU machine (the `device` tool), which has jax, flax, optax, orbax, torch, pillow but no lark,
# no grain and no network (its package list: bench/gpu_image_packages.txt; the smoke test runs
# this script with what that list lacks made unimportable). Prepare once, in the repository
# root of the checkout the device tool sends (/.whl/ and /data/ are git-ignored there):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp -d .whl lark==1.3.1
#   mkdir -p data && cp ../shared/data/cifar10/cifar10-jpeg.tar.xz data/
#
# then:  device run  carry [".whl", "data"]  timeout_s 420  command "bash bench/gpu.sh"
# Everything it measures comes back in $OUT (8 files): report.md (all numbers), log.txt, the
# raw JSON / metrics behind the report.
#
# What it does, against a deadline (ARCHC_GPU_BUDGET seconds, default 345, from its start):
#   - decodes the CIFAR-10 pack on every core in the background (bench/decode_parallel.py:
#     the decoded set, 176 MiB, is over what a device call can carry);
#   (a) training-step throughput of SqueezeNext-23 1x (sqnxt, stages [6,6,8,1]) in bf16,
#       batch 512: JAX (archc train's own step) first, then after (b) torch eager, torch
#       channels_last and torch.compile (the fair baseline: bf16 autocast, channels_last),
#       and JAX with runs of identical blocks scanned if time remains; MFU from archc's MACs
#       (bench/train_speed.py, one process a row, each with its own time limit);
#   (b) SE-SqueezeNext-10-1.0x (se_sqnxt, the default [1,2,4,1]) trained with --recipe fast
#       (40 epochs); the report gives the training time to 90.5 % test accuracy;
#   (c) the papers' recipe (se_sqnxt, 200 epochs, bf16) for the time that remains: the
#       epochs it finished are in the report.
#
# ARCHC_GPU_SMOKE=1 runs the same steps with tiny settings (a small network, 100 images a
# class, 2 epochs, a few steps): tests/test_gpu_script.py runs it on the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/archc-gpu-out}
mkdir -p "$OUT"
START=$(date +%s)
BUDGET=${ARCHC_GPU_BUDGET:-345}
WORK=${ARCHC_GPU_WORK:-/tmp/archc-gpu}
mkdir -p "$WORK"
exec > >(tee -a "$OUT/log.txt") 2>&1
left() { echo $((START + BUDGET - $(date +%s))); }
limit() {  # seconds for a step: at most $1 (x SCALE), and what is left minus $2 (kept for later)
    local l=$(( $(left) - $2 )) cap=$(( $1 * SCALE ))
    (( l > cap )) && l=$cap
    echo $(( l > 0 ? l : 0 ))
}
step() { echo; echo "== $* ($(left) s left)"; }

export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
# the checkout's archc/ folder is not the whole package (its subpackages lie beside it): Python
# must not put the working directory (or a script's folder) first on its path, where archc/
# would hide the package laid out below ("No module named 'archc.compiler'")
export PYTHONSAFEPATH=1
# torch.compile's kernels in this run's own folder (a killed compile elsewhere can leave a
# truncated .so behind that later runs would load)
export TORCHINDUCTOR_CACHE_DIR=$WORK/inductor
# the wheels carried for what the image lacks (lark): installed into this run's own folder
WHEELS=${ARCHC_GPU_WHEELS:-.whl}
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" \
        "$WHEELS"/*.whl
    export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}
fi
# archc as a package without installing it: pyproject.toml's package-dir layout, as links
# (read from pyproject.toml, so a package added or moved there is linked too)
rm -rf "$WORK/pkg"
python3 - "$ROOT" "$WORK/pkg" <<'PY' || { echo "cannot lay out archc"; exit 1; }
import os, sys, tomllib
root, dest = sys.argv[1:]
with open(os.path.join(root, "pyproject.toml"), "rb") as f:
    dirs = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
for package, folder in sorted(dirs.items(), key=lambda kv: kv[0].count(".")):
    target = os.path.join(dest, *package.split("."))
    if "." in package:  # a subpackage: its folder as one link
        os.symlink(os.path.join(root, folder), target)
        continue
    os.makedirs(target)  # the top package: its own files, subpackages linked in beside them
    for name in os.listdir(os.path.join(root, folder)):
        if name != "__pycache__":
            os.symlink(os.path.join(root, folder, name), os.path.join(target, name))
PY
export PYTHONPATH=$WORK/pkg${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import archc, jax; print('archc', archc.__file__, '| jax', jax.__version__, jax.devices())"
# every package the run needs, before any GPU time is spent: a clear error and exit 1 if not
python3 -c "import archc; archc._require_training('jax'); archc._require_training('torch')" || {
    echo "archc's training packages are missing"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true

# the smoke run on a CPU: every step's cap x5 (a cold torch.compile alone takes minutes there)
SCALE=${ARCHC_GPU_SCALE:-1}
if [ "${ARCHC_GPU_SMOKE:-0}" = 1 ]; then
    SCALE=${ARCHC_GPU_SCALE:-5}
    SPEED=(sqnxt -D 'stages=[1,1,1,1]' -D width=0.25 --batch 16 --steps 2 --repeats 1 --images 64)
    NET=(se_sqnxt -D width=0.25)
    FAST=(--epochs 2 --batch-size 50 --warmup-epochs 1 --precision fp32)
    PAPER=(--epochs 2 --batch-size 50 --precision fp32)
    PER_CLASS=(--per-class 100)
else
    SPEED=(sqnxt --batch 512 --steps 20 --repeats 3)
    NET=(se_sqnxt)
    FAST=()
    PAPER=(--precision bf16)
    PER_CLASS=()
fi
DATA=$WORK/cifar10-bin
step "decoding data/cifar10-jpeg.tar.xz in the background"
python3 bench/decode_parallel.py data/cifar10-jpeg.tar.xz "$DATA" "${PER_CLASS[@]}" &
DECODE=$!

speed() {  # one row of bench/train_speed.py: speed ROW SECONDS_AT_MOST SECONDS_KEPT
    local t
    t=$(limit "$2" "$3")
    step "(a) throughput: $1 (at most $t s)"
    (( t > 10 )) || { echo "skipped: no time left"; return; }
    timeout -k 5 "$t" python3 bench/train_speed.py "${SPEED[@]}" --precision bf16 \
        --only "$1" --json "$WORK/speed_$1.json" || echo "row $1 did not finish ($?)"
}
train() {  # train NAME SECONDS_AT_MOST SECONDS_KEPT ARGS...
    local name=$1 t
    t=$(limit "$2" "$3")
    shift 3
    step "($name) archc train ${NET[*]} $* (at most $t s)"
    (( t > 15 )) || { echo "skipped: no time left"; return; }
    timeout -k 5 "$t" python3 -m archc train "${NET[@]}" --data "$DATA" --no-progress \
        --out "$WORK/run-$name" "$@" || echo "run $name stopped ($?)"
}

speed jax 100 200
wait "$DECODE" || { echo "decoding failed"; exit 1; }
train fast 170 60 --recipe fast "${FAST[@]}"
speed compile 120 40
speed eager 40 30
speed channels_last 40 25
speed jax_scan 80 60
train paper 600 8 "${PAPER[@]}"

step "report"
python3 bench/gpu_report.py "$WORK" "$OUT" || echo "report failed"
ls -la "$OUT"
echo "total $(( $(date +%s) - START )) s"
