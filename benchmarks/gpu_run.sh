#!/usr/bin/env bash
# The one prepared GPU command (issue #13, section 4): the papers' own schedules on a lent H100/H200, JAX, one call.
#
# Here, first: FERMUSIC_DATA=../shared/data bash benchmarks/gpu_prepare.sh   (wheels in .whl/, data in .gpu/)
# Then, as the device tool's command, carrying .gpu and .whl:
#   bash benchmarks/gpu_run.sh [--minutes 9.3] [--runs yu,shinde-cnn,shinde-resnet50,ugochukwu] [gpu_train.py options]
# Further runs, asked for by name: compact (lesson 15, issue #18; 3 seeds: --seed 0,1,2), han-fusion,
# han-image+landmarks, han-image+hog, han-image, han-vgg16, han-resnet50 (Han et al.'s networks, issue #13;
# --han-factor 30 for the paper's expansion; fusion and the landmark ablation need gpu_prepare.sh --landmarks).
# What comes back in $OUT (at most 8 files): console.log, device.txt, records.tgz (fermusic run records:
# `tar xzf records.tgz` in the checkout puts them under results/), cnn8_fer2013.keras.part-NN (Yu's model,
# split under the 16 MiB per-file limit: `cat cnn8_fer2013.keras.part-* > data/models/cnn8_fer2013.keras`),
# compact_fer2013.keras (the compact CNN's seed-0 model, whole: `cp` it to data/models/compact_fer2013.keras).
# Size: the carried data (51.5 MiB with Han's landmarks, 47.3 without), the wheels (5.4 MiB) and the tracked tree
# (33 MiB) are more than one call carries (64 MiB), so gpu_prepare.sh splits the data into stages (.gpu/stage-K,
# pack_fer2013.py --stages; measured 2026-11-27: call 1 61.3 MiB, call 2 59.9 MiB):
#   calls 1..N-1, each carrying one stage:      bash benchmarks/gpu_run.sh --stage   (checks it arrived; seconds)
#   call N, carrying the last stage and .whl:   bash benchmarks/gpu_run.sh [options] (joins the stages, trains)
# Make the calls back to back: the stages wait on the warm machine, which is given back when idle.
# Seeds at the same time on the one GPU (a small model leaves it mostly idle: compact's 3 seeds
# in a row, ~600 s, are more than one call allows), each seed in its own gpu_train.py process:
#   bash benchmarks/gpu_run.sh --minutes 9.3 --runs compact --seed 0,1,2 --parallel
# Each process gets --seed S, its own folder $OUT/seed-S, the same minutes left and 0.9/N of the
# GPU's memory (one variable: XLA_CLIENT_MEM_FRACTION where the installed jaxlib reads that name, else
# XLA_PYTHON_CLIENT_MEM_FRACTION; a jaxlib that reads both refuses the GPU when both are set, and JAX then
# trains on the CPU: 2026-11-28, jax 0.11.2; not when either or XLA_PYTHON_CLIENT_PREALLOCATE is set already:
# JAX's "GPU memory allocation" page). gpu_train.py stops at once where JAX finds no GPU (--allow-cpu: dry runs).
# Each record says it ran beside the others (throughput.concurrent_runs = N, and a note). Merged
# as one call's: console.log (each line prefixed "[seed S] "), records.tgz, the models (seed 0's
# only, as without --parallel); the exit status is non-zero if any seed failed, named at the end.
# Variants of a run at the same time (a sweep), each with its own FERMUSIC_OVERRIDES merged over the
# caller's, every variant once per seed:
#   bash benchmarks/gpu_run.sh --minutes 9.3 --runs compact --seed 0 --parallel \
#     --variants '{"upsample": 64};{"widths": [24, 48, 96, 192]}'
# A variant's keys that start with -- are not settings but gpu_train.py options for that variant's processes
# (after the caller's: argparse keeps the last), so other runs, or another precision, can share the call:
#   --runs compact --variants '{"upsample": 64};{"--runs": "shinde-cnn", "--precision": "float32"}'
# (--seed, --out, --minutes, --concurrent and --data stay gpu_run.sh's.)
# Variant K (from 1, in the order given) runs as "vK seed S" in $OUT/run-vK-sS; its records keep
# their overrides (a name taken by another variant's record gets __vK before .json) and its seed-0
# models come back as vK-<name>.keras.
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
VARIANTS=''
args=()    # gpu_train.py's options, as given
pargs=()   # the same less --seed: each --parallel process gets its own
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift 2;;
    --stage) STAGE=1; shift;;
    --parallel) PARALLEL=1; shift;;
    --variants) VARIANTS=${2-}; shift $(($# > 1 ? 2 : 1));;
    --seed) SEEDS=${2-}; args+=("${@:1:2}"); shift $(($# > 1 ? 2 : 1));;
    --seed=*) SEEDS=${1#--seed=}; args+=("$1"); shift;;
    *) args+=("$1"); pargs+=("$1"); shift;;
  esac
done
if [ -n "$VARIANTS" ] && [ "$PARALLEL" = 0 ]; then
  echo "gpu_run.sh: --variants runs its variants side by side: add --parallel"; exit 2
fi
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
merge_overrides() {   # the caller's FERMUSIC_OVERRIDES with variant $1 over them, as one JSON object, then
  # (tab-separated) the gpu_train.py options the variant gives as "--name": value keys, which are not settings
  python3 -c 'import json, os, sys
try: base, v = json.loads(os.environ.get("FERMUSIC_OVERRIDES") or "{}"), json.loads(sys.argv[1])
except ValueError as e: sys.exit(f"not JSON ({e})")
if not (isinstance(base, dict) and isinstance(v, dict)): sys.exit("not a JSON object")
opts = [k for k in v if k.startswith("--")]
for k in opts:
    if k in ("--seed", "--out", "--minutes", "--concurrent", "--data"):
        sys.exit(f"{k} is set by gpu_run.sh for every process, not by a variant")
    if not isinstance(v[k], (str, int, float)) or "\t" in str(v[k]) or str(v[k]) == "":
        sys.exit(f"{k}: {json.dumps(v[k])} is not one option value")
words = [w for k in opts for w in (k, str(v.pop(k)))]
print("\t".join([json.dumps({**base, **v}), *words]))' "$1"
}
parallel_seeds() {   # --parallel: a gpu_train.py process per seed (per variant and seed), all at once
  local s r k i n d ov vo word=seeds seeds=() variants=('') tags=() dirs=() pre=() jseed=() ovs=()
  local vopts=() words=()
  local pids=() failed=() bad=() extra=() frac=preset rc=0 log="$OUT/console.log"
  IFS=, read -ra seeds <<< "$SEEDS"
  for s in "${seeds[@]:-}"; do   # none at all: one empty word, refused
    if ! [[ $s =~ ^[0-9]+$ ]] || [ "$(printf '%s\n' "${seeds[@]}" | grep -cx -- "$s")" != 1 ]; then
      echo "gpu_run.sh --parallel: --seed $SEEDS: '$s' is not a whole number >= 0 given once;" \
        "fix the list" | tee "$log"
      return 2
    fi
  done
  if [ -n "$VARIANTS" ]; then IFS=';' read -ra variants <<< "$VARIANTS"; word=runs; fi
  for k in "${!variants[@]}"; do
    if [ -n "$VARIANTS" ] && ! ov=$(merge_overrides "${variants[$k]}" 2>&1); then
      echo "gpu_run.sh --variants: variant $((k + 1)) '${variants[$k]}': $ov; give JSON objects" \
        "separated by ';'" | tee "$log"
      return 2
    fi
    vo=''
    if [ -n "$VARIANTS" ] && [[ $ov == *$'\t'* ]]; then vo=${ov#*$'\t'}; ov=${ov%%$'\t'*}; fi
    for s in "${seeds[@]}"; do
      if [ -n "$VARIANTS" ]; then
        tags+=("v$((k + 1)) seed $s"); dirs+=("$OUT/run-v$((k + 1))-s$s"); pre+=("v$((k + 1))-")
      else
        tags+=("seed $s"); dirs+=("$OUT/seed-$s"); pre+=('')
      fi
      jseed+=("$s"); ovs+=("${ov-}"); vopts+=("$vo")
    done
  done
  n=${#tags[@]}
  if [ -z "${XLA_PYTHON_CLIENT_MEM_FRACTION:-}${XLA_CLIENT_MEM_FRACTION:-}" ] &&
     [ -z "${XLA_PYTHON_CLIENT_PREALLOCATE:-}" ]; then
    frac=$(python3 -c "print(f'{0.9 / $n:.3f}')"); fvar=$(mem_fraction_var)
    export "$fvar=$frac"; frac="$frac ($fvar)"
  fi
  echo "parallel: $(IFS=,; echo "${tags[*]}") as $n processes on one device," \
    "GPU memory fraction $frac each" > "$log"
  for i in "${!tags[@]}"; do
    if [ -n "$VARIANTS" ]; then
      echo "[${tags[$i]}] FERMUSIC_OVERRIDES=${ovs[$i]}${vopts[$i]:+ ${vopts[$i]//$'\t'/ }}" >> "$log"
    fi
    mkdir -p "${dirs[$i]}"
    extra=(); if [ "${GPU_RUN_TEST_FAIL_SEED-}" = "${jseed[$i]}" ]; then extra=(--test-fail); fi
    words=(); if [ -n "${vopts[$i]}" ]; then IFS=$'\t' read -ra words <<< "${vopts[$i]}"; fi
    ( if [ -n "$VARIANTS" ]; then export FERMUSIC_OVERRIDES="${ovs[$i]}"; fi
      python3 benchmarks/gpu_train.py "${pargs[@]}" "${words[@]}" --out "${dirs[$i]}" \
        --minutes "$LEFT" --seed "${jseed[$i]}" --concurrent "$n" "${extra[@]}" 2>&1 \
        | sed -u "s/^/[${tags[$i]}] /" >> "$log" ) &
    pids+=($!)
  done
  for i in "${!tags[@]}"; do
    wait "${pids[$i]}"; r=$?
    if [ "$r" != 0 ]; then
      failed+=("${tags[$i]} (exit $r)"); bad+=("$i"); [ "$rc" = 0 ] && rc=$r
    fi
  done
  for i in "${!tags[@]}"; do   # merge records (their names carry the seed) and seed-0 models
    d=${dirs[$i]}
    if [ -d "$d/results" ]; then
      while IFS= read -r f; do   # a name another variant's record took: __vK before .json
        r="$OUT/results/$f"; mkdir -p "$(dirname "$r")"
        if [ -e "$r" ]; then r="${r%.json}__${pre[$i]%-}.json"; fi
        cp "$d/results/$f" "$r"
      done < <(cd "$d/results" && find . -type f | sed 's|^\./||')
    fi
    for m in "$d"/*.keras; do
      [ -f "$m" ] || continue
      if [ -e "$OUT/${pre[$i]}${m##*/}" ]; then echo "parallel: ${tags[$i]}'s ${m##*/} left out" >> "$log"
      else mv "$m" "$OUT/${pre[$i]}${m##*/}"; fi
    done
    rm -rf "$d"
  done
  tail -n 40 "$log"
  for i in "${bad[@]}"; do   # the lines of a failed run may lie further up, among the others'
    echo "--- ${tags[$i]} failed; its last lines:"; grep -F "[${tags[$i]}] " "$log" | tail -n 8
  done
  if [ "$rc" != 0 ]; then echo "parallel: FAILED: ${failed[*]}" | tee -a "$log"
  else echo "parallel: all $n $word exited 0" | tee -a "$log"; fi
  return "$rc"
}
mem_fraction_var() {   # the name of the GPU memory fraction that the installed jaxlib reads (the newer one if both)
  python3 -c 'import importlib.util as u, pathlib
s = u.find_spec("jaxlib.xla_client")
new = s is not None and "XLA_CLIENT_MEM_FRACTION" in pathlib.Path(s.origin).read_text()
print("XLA_CLIENT_MEM_FRACTION" if new else "XLA_PYTHON_CLIENT_MEM_FRACTION")'
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
