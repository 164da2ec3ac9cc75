#!/usr/bin/env bash
# Prepare what benchmarks/gpu_run.sh needs on a lent GPU machine, here, before the call:
#   .whl/        wheels of the packages its image lacks (keras and what fermusic imports beyond it), for CPython 3.12
#   .gpu/fer2013 the packed dataset (benchmarks/pack_fer2013.py), when FER2013 is found
# and report what the call would carry against its 64 MiB limit. Both folders are git-ignored.
#   FERMUSIC_DATA=../shared/data bash benchmarks/gpu_prepare.sh [--landmarks]
# --landmarks adds the dlib landmarks of Han's lesson to the bundle (from the feature cache, or computed first: about
# 15 min on 2 cores), and those re-detected on the disturbed test faces (2 min more), so that han-fusion and
# han-image+landmarks can run and the han-* runs also score test_detected and the robustness tests as the lesson does.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS="keras==3.15.1 namex==0.1.0 optree==0.20.0 fastcore==1.12.47 keras-tuner==1.4.8 kt-legacy==1.0.5 pillow-jxl-plugin==1.3.8"
mkdir -p .whl
for w in $WHEELS; do
  ls .whl/$(echo "${w%%==*}" | tr - _)-"${w##*==}"-*.whl >/dev/null 2>&1 && continue
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$w"
done
DATA=${FERMUSIC_DATA:-../shared/data}
# (re)pack when there is no bundle, or an older one without FER+'s 'not a face' flags (Han's test_ferplus_faces reads them)
if ! python3 -c "import numpy as np, sys; sys.exit('nonface' not in np.load('.gpu/fer2013/meta.npz').files)" 2>/dev/null; then
  # packing with JPEG XL needs the plugin here too: install it from the wheel folder into a scratch target
  python3 -m pip install -q --no-deps --target /tmp/fermusic-jxl pillow-jxl-plugin==1.3.8 2>/dev/null || true
  PYTHONPATH="$PWD:/tmp/fermusic-jxl${PYTHONPATH:+:$PYTHONPATH}" python3 benchmarks/pack_fer2013.py \
    --source "$DATA/fer2013/fer2013.csv.xz" --ferplus "$DATA/ferplus/fer2013new.csv.gz" --out .gpu/fer2013
fi
if [ "${1:-}" = --landmarks ] && ! python3 -c "import numpy as np, sys; sys.exit('robust_occlude_both' not in np.load('.gpu/fer2013/meta.npz').files)"; then
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python3 benchmarks/pack_fer2013.py --landmarks --source "$DATA/fer2013/fer2013.csv.xz" --out .gpu/fer2013
fi
# one call cannot carry the tree, the data and the wheels: split the data into stages, one call each
python3 benchmarks/pack_fer2013.py --stages --out .gpu/fer2013
