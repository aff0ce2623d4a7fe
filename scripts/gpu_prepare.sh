#!/usr/bin/env bash
# Ready what a device run of scripts/train_gpu.sh carries, so that a lent GPU is one call. The device has
# PyTorch, transformers, accelerate, typer and rich, but not diffusers or resvg-py, and it reaches no registry:
#   .whl/          their wheels for its Python 3.12 (7.5 MB; carry ".whl")
#   .devdata/npm/  the pinned npm tarballs, emojibase in English only (23 MB), from which the device builds the
#                  64 px dataset (carry ".devdata")
# A call sends the tracked files and what it carries, 64 MiB at most, and the bundled model alone is 56 MiB: for
# the call, untrack it (`git rm -r -q --cached models/unclip-emoji && echo /models/unclip-emoji/ >>
# .git/info/exclude`), carry only the parts the stages read and start from (models/unclip-emoji/prior/image_encoder
# and models/unclip-emoji/decoder: 23 MB for the decoder; inpaint/unet, 16 MB more, in a call of its own), set
# SKIP_EVAL=1 (the rest of the model is not there: judge the weights here with `unclip eval cascade`), and restore
# it afterwards (`git reset -q models/unclip-emoji` and drop the exclude line). This script reports the total.
# Then, in one device call (carry [".whl", ".devdata", "models/unclip-emoji/prior/image_encoder",
# "models/unclip-emoji/decoder"]):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#     .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src || exit; INIT_FROM=models/unclip-emoji \
#     STAGES="decoder" MAX_MINUTES=7 BUDGET_SECONDS=500 CACHE=.devdata DATA_LOCALES=en DATA=/tmp/data \
#     SKIP_EVAL=1 RUN=/tmp/run SHIP=$OUT PYTHON=python3 bash scripts/train_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CACHE=${CACHE:-cache}
[ -d "$CACHE/npm" ] || $PY -m unclip data build emoji --out "${DATA:-data/emoji}" --cache "$CACHE" --sizes 64
mkdir -p .whl .devdata/npm
cp "$CACHE"/npm/iconify-json-*.tgz .devdata/npm/
# emojibase-data with English alone (6.7 MB → 0.2 MB): the decoders need images and labels, not captions in
# 28 languages; build the device's dataset with `--locales en` (train_gpu.sh's DATA_LOCALES=en)
eb=$(ls "$CACHE"/npm/emojibase-data-*.tgz | head -1)
tmp=$(mktemp -d)
tar -xzf "$eb" -C "$tmp" package/package.json package/LICENSE package/en/data.json package/en/messages.json
tar -C "$tmp" -czf ".devdata/npm/$(basename "$eb")" package
rm -rf "$tmp"
platforms=""
for n in 2_28 2_27 2_24 2_17 2014 1; do
  case $n in 2014|1) platforms+=" --platform manylinux${n}_x86_64" ;; *) platforms+=" --platform manylinux_${n}_x86_64" ;; esac
done
for pkg in "diffusers==$($PY -c 'import diffusers; print(diffusers.__version__)')" \
           "resvg-py==$($PY -c 'from importlib.metadata import version; print(version("resvg-py"))')"; do
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms -d .whl "$pkg"
done
# A device call sends the tracked files plus what it carries, 64 MiB at most in all.
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cb .whl .devdata | tail -1 | cut -f1)
total=$(( (tracked + carried) / 1048576 ))
echo "tracked $(( tracked / 1048576 )) MiB + carried $(( carried / 1048576 )) MiB = $total MiB (the limit is 64)"
if [ "$total" -ge 64 ]; then
  echo "too large to travel: the bundled weights alone take most of the 64 MiB; see scripts/train_gpu.sh's header" >&2
  exit 1
fi
