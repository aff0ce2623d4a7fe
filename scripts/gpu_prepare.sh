#!/usr/bin/env bash
# Ready a GPU call, so that a lent GPU is one call (scripts/gpu_run.sh trains there; the standing order in the
# developers' guide says when):
#   bash scripts/gpu_prepare.sh [STAGES]   # default "decoder"; or "inpaint"
#   ... the device call it prints, then at once:
#   bash scripts/gpu_prepare.sh restore
# The device has PyTorch, transformers, accelerate, typer and rich, but not diffusers or resvg-py, and reaches no
# registry. This writes, ignored by git:
#   .whl/          their wheels for its Python 3.12 (7.8 MB)
#   .devdata/npm/  the pinned npm tarballs, emojibase in English only (23 MB), from which the device builds the
#                  64 px dataset (DATA_LOCALES=en: the decoders need images and labels, not captions in 28 languages)
# A call sends the tracked files and what it carries, 64 MiB at most, and the bundled model alone is 59 MB: the
# weights are untracked for the call (the index only: `restore` puts them back; nothing on disk changes) and the
# call carries the parts its stages read and start from. Stage by stage the parts fit; together they do not.
set -euo pipefail
cd "$(dirname "$0")/.."
BIG=(models/unclip-emoji models/judge-emoji src/unclip/safety/prompt_classifier.npz)
EXCLUDE=.git/info/exclude
if [ "${1:-}" = restore ]; then
  git reset -q -- "${BIG[@]}"
  [ -f "$EXCLUDE" ] && sed -i '/^# >>> gpu_prepare.sh/,/^# <<< gpu_prepare.sh/d' "$EXCLUDE"
  git status --short -- "${BIG[@]}" | grep . && { echo "the index still differs for the weights" >&2; exit 1; }
  echo "restored: the weights are tracked again"
  exit 0
fi
STAGES=${1:-decoder}
PY=${PYTHON:-.venv/bin/python}
CACHE=${CACHE:-cache}
[ -z "$(git status --porcelain -- "${BIG[@]}")" ] || { echo "uncommitted changes under ${BIG[*]}: commit first" >&2; exit 1; }
[ -d "$CACHE/npm" ] || $PY -m unclip data build emoji --out "${DATA:-data/emoji}" --cache "$CACHE" --sizes 64
mkdir -p .whl .devdata/npm
cp "$CACHE"/npm/iconify-json-*.tgz .devdata/npm/
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
  name=${pkg%%==*}
  [ -n "$(ls .whl/"${name//-/_}"-"${pkg##*==}"-*.whl 2>/dev/null)" ] \
    || $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms -d .whl "$pkg"
done

carry=(.whl .devdata models/unclip-emoji/prior/image_encoder)
for s in $STAGES; do
  case $s in
    decoder) carry+=(models/unclip-emoji/decoder) ;;
    inpaint) carry+=(models/unclip-emoji/inpaint models/unclip-emoji/decoder/movq) ;;
    *) echo "gpu_prepare.sh readies decoder or inpaint calls, not $s" >&2; exit 1 ;;
  esac
done
git rm -r -q --cached -- "${BIG[@]}"
{ echo "# >>> gpu_prepare.sh"; for p in "${BIG[@]}"; do echo "/$p"; done; echo "# <<< gpu_prepare.sh"; } >> "$EXCLUDE"
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
others=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cbL "${carry[@]}" | tail -1 | cut -f1)
total=$(( tracked + ${others:-0} + carried ))
echo "travels: tracked $(( tracked / 1048576 )) MiB + untracked $(( ${others:-0} / 1048576 )) MiB + carried" \
  "$(( carried / 1048576 )) MiB = $(( total / 1048576 )) MiB (the limit is 64)"
if [ "$total" -ge $(( 64 * 1048576 )) ]; then
  bash "$0" restore
  echo "too large to travel: one stage per call" >&2
  exit 1
fi
json=$(printf '"%s", ' "${carry[@]}")
cat <<MSG

Ready. The weights are untracked in the index until \`bash scripts/gpu_prepare.sh restore\`: make no commit before.
The device call (run):
  command:   STAGES="$STAGES" bash scripts/gpu_run.sh
  carry:     [${json%, }]
  timeout_s: 600
Then restore, and judge what came back here:
  mkdir -p /tmp/gpu && cat FILES_AT/model.tar.part-* | tar -x -C /tmp/gpu
  rm -rf /tmp/cand && cp -r models/unclip-emoji /tmp/cand && for p in /tmp/gpu/packed/*/; do
    for q in "\$p"*; do [ -L "\$q" ] || { rm -rf "/tmp/cand/\$(basename "\$p")/\$(basename "\$q")"; cp -r "\$q" "/tmp/cand/\$(basename "\$p")/"; }; done; done
  .venv/bin/unclip eval cascade --model /tmp/cand --rows decoder,canonical,everyday --out /tmp/cand.json
MSG
