#!/usr/bin/env bash
# The one prepared GPU command (issue #13, section 4): the papers' own schedules on a lent H100/H200, JAX, one call.
#
# Here, first: FERMUSIC_DATA=../shared/data bash benchmarks/gpu_prepare.sh   (wheels in .whl/, data in .gpu/)
# Then, as the device tool's command, carrying .gpu and .whl:
#   bash benchmarks/gpu_run.sh [--minutes 9.3] [--runs yu,shinde-cnn,shinde-resnet50,ugochukwu] [gpu_train.py options]
# Further runs, asked for by name: compact (lesson 15, issue #18; 3 seeds: --seed 0,1,2), han-image, han-vgg16,
# han-resnet50 (Han et al.'s networks that read the face alone, issue #13; --han-factor 30 for the paper's expansion).
# What comes back in $OUT (at most 8 files): console.log, device.txt, records.tgz (fermusic run records:
# `tar xzf records.tgz` in the checkout puts them under results/), cnn8_fer2013.keras.part-NN (Yu's model,
# split under the 16 MiB per-file limit: `cat cnn8_fer2013.keras.part-* > data/models/cnn8_fer2013.keras`),
# compact_fer2013.keras (the compact CNN's seed-0 model, whole: `cp` it to data/models/compact_fer2013.keras).
# Size: the carried data (49.9 MiB with Han's landmarks, 47.3 without), the wheels (5.4 MiB) and the tracked tree
# (33 MiB) are more than one call carries (64 MiB), so gpu_prepare.sh splits the data into stages (.gpu/stage-K,
# pack_fer2013.py --stages; measured 2026-11-27: call 1 61.3 MiB, call 2 59.9 MiB):
#   calls 1..N-1, each carrying one stage:      bash benchmarks/gpu_run.sh --stage   (checks it arrived; seconds)
#   call N, carrying the last stage and .whl:   bash benchmarks/gpu_run.sh [options] (joins the stages, trains)
# Make the calls back to back: the stages wait on the warm machine, which is given back when idle.
# Seeds at the same time on the one GPU (a small model leaves it mostly idle: compact's 3 seeds
# in a row, ~600 s, are more than one call allows), each seed in its own gpu_train.py process:
#   bash benchmarks/gpu_run.sh --minutes 9.3 --runs compact --seed 0,1,2 --parallel
# Each process gets --seed S, its own folder $OUT/seed-S, the same minutes left and 0.9/N of the
# GPU's memory (XLA_PYTHON_CLIENT_MEM_FRACTION and its new name XLA_CLIENT_MEM_FRACTION, unless
# either or XLA_PYTHON_CLIENT_PREALLOCATE is set already: JAX's "GPU memory allocation" page).
# Each record says it ran beside the others (throughput.concurrent_runs = N, and a note). Merged
# as one call's: console.log (each line prefixed "[seed S] "), records.tgz, the models (seed 0's
# only, as without --parallel); the exit status is non-zero if any seed failed, named at the end.
# GPU_RUN_TEST_FAIL_SEED=S (tests only) hands seed S's process an option it refuses.
# A CPU dry run of this same script is tests/test_gpu_run.py.
set -uo pipefail
T0=$(date +%s)
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
MINUTES=9.3
STAGE=0
PARALLEL=0
SEEDS=0
args=()    # gpu_train.py's options, as given
pargs=()   # the same less --seed: each --parallel process gets its own
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift 2;;
    --stage) STAGE=1; shift;;
    --parallel) PARALLEL=1; shift;;
    --seed) SEEDS=${2-}; args+=("${@:1:2}"); shift $(($# > 1 ? 2 : 1));;
    --seed=*) SEEDS=${1#--seed=}; args+=("$1"); shift;;
    *) args+=("$1"); pargs+=("$1"); shift;;
  esac
done
if [ "$STAGE" = 1 ]; then   # a staging call: the carried stage now waits here for the last call
  du -sh .gpu/stage-* 2>/dev/null || { echo "no .gpu/stage-K arrived: name it in carry"; exit 2; }
  exit 0
fi
if ls -d .gpu/stage-* >/dev/null 2>&1; then python3 benchmarks/pack_fer2013.py --join --out .gpu/fer2013 || exit 2; fi
if ! python3 -c "import keras" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then   # the GPU image has no keras
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
parallel_seeds() {   # --parallel: a gpu_train.py process per seed, all at once
  local s r seeds=() pids=() failed=() bad=() extra=() frac=preset rc=0 log="$OUT/console.log"
  IFS=, read -ra seeds <<< "$SEEDS"
  for s in "${seeds[@]:-}"; do   # none at all: one empty word, refused
    if ! [[ $s =~ ^[0-9]+$ ]] || [ "$(printf '%s\n' "${seeds[@]}" | grep -cx -- "$s")" != 1 ]; then
      echo "gpu_run.sh --parallel: --seed $SEEDS: '$s' is not a whole number >= 0 given once;" \
        "fix the list" | tee "$log"
      return 2
    fi
  done
  if [ -z "${XLA_PYTHON_CLIENT_MEM_FRACTION:-}${XLA_CLIENT_MEM_FRACTION:-}" ] &&
     [ -z "${XLA_PYTHON_CLIENT_PREALLOCATE:-}" ]; then
    frac=$(python3 -c "print(f'{0.9 / ${#seeds[@]}:.3f}')")
    export XLA_PYTHON_CLIENT_MEM_FRACTION=$frac XLA_CLIENT_MEM_FRACTION=$frac
  fi
  echo "parallel: seeds ${seeds[*]} as ${#seeds[@]} processes on one device," \
    "GPU memory fraction $frac each" > "$log"
  for s in "${seeds[@]}"; do
    mkdir -p "$OUT/seed-$s"
    extra=(); if [ "${GPU_RUN_TEST_FAIL_SEED-}" = "$s" ]; then extra=(--test-fail); fi
    ( python3 benchmarks/gpu_train.py "${pargs[@]}" --out "$OUT/seed-$s" --minutes "$LEFT" \
        --seed "$s" --concurrent "${#seeds[@]}" "${extra[@]}" 2>&1 \
        | sed -u "s/^/[seed $s] /" >> "$log" ) &
    pids+=($!)
  done
  for i in "${!seeds[@]}"; do
    wait "${pids[$i]}"; r=$?
    if [ "$r" != 0 ]; then
      failed+=("seed ${seeds[$i]} (exit $r)"); bad+=("${seeds[$i]}"); [ "$rc" = 0 ] && rc=$r
    fi
  done
  for s in "${seeds[@]}"; do   # merge records (their names carry the seed) and models (seed 0's)
    if [ -d "$OUT/seed-$s/results" ]; then
      mkdir -p "$OUT/results" && cp -r "$OUT/seed-$s/results/." "$OUT/results/"
    fi
    for m in "$OUT/seed-$s"/*.keras; do
      [ -f "$m" ] || continue
      if [ -e "$OUT/${m##*/}" ]; then echo "parallel: seed $s's ${m##*/} left out" >> "$log"
      else mv "$m" "$OUT/"; fi
    done
    rm -rf "$OUT/seed-$s"
  done
  tail -n 40 "$log"
  for s in "${bad[@]}"; do   # the lines of a failed seed may lie further up, among the others'
    echo "--- seed $s failed; its last lines:"; grep -F "[seed $s] " "$log" | tail -n 8
  done
  if [ "$rc" != 0 ]; then echo "parallel: FAILED: ${failed[*]}" | tee -a "$log"
  else echo "parallel: all ${#seeds[@]} seeds exited 0" | tee -a "$log"; fi
  return "$rc"
}
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
(nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv) > "$OUT/device.txt" 2>&1 || echo "no nvidia-smi" > "$OUT/device.txt"
LEFT=$(python3 -c "import sys; print(round(float(sys.argv[1]) - ($(date +%s) - $T0) / 60, 2))" "$MINUTES")
if [ "$PARALLEL" = 0 ]; then
  python3 benchmarks/gpu_train.py --out "$OUT" --minutes "$LEFT" "${args[@]}" > "$OUT/console.log" 2>&1
  rc=$?
  tail -n 40 "$OUT/console.log"
  rm -f "$OUT/gpu_train.log"   # the same lines are in console.log
else
  rc=0; parallel_seeds || rc=$?
fi
if [ -d "$OUT/results" ]; then tar czf "$OUT/records.tgz" -C "$OUT" results && rm -rf "$OUT/results"; fi
for m in "$OUT"/*.keras; do   # a model over the 16 MiB a returned file may hold travels in parts
  if [ -f "$m" ] && [ "$(stat -c %s "$m")" -gt $((15 * 1024 * 1024)) ]; then split -b 15m -d "$m" "$m.part-" && rm "$m"; fi
done
ls -l "$OUT"
exit $rc
