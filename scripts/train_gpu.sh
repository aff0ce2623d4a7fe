#!/usr/bin/env bash
# Train the emoji-base model on one GPU inside a fixed time box (default 9 minutes of wall time).
# Three chains run side by side on the one GPU: tokenizer→clip→prior, movq→decoder→inpaint, and the two
# upsamplers. UNCLIP_DEADLINE makes every stage stop and export in time.
#   CONFIG=emoji-base RUN=/tmp/run DATA=/tmp/data CACHE=cache BUDGET_SECONDS=510 scripts/train_gpu.sh
# STAGES="upsampler-256 upsampler-1024" trains just those stages, all side by side, for the whole box (the
# upsamplers need only the build's svg/ folder and manifest.json, no cache). MAX_MINUTES and MAX_STEPS, when
# set, override every stage's limits (the cosine schedule follows MAX_STEPS).
set -uo pipefail
CONFIG=${CONFIG:-emoji-base}
RUN=${RUN:-runs/$CONFIG}
DATA=${DATA:-data/emoji-64}
CACHE=${CACHE:-cache}
BUDGET=${BUDGET_SECONDS:-510}
PY=${PYTHON:-python3}
export UNCLIP_DEADLINE=$(( $(date +%s) + BUDGET ))
export PYTHONUNBUFFERED=1
mkdir -p "$RUN"

t0=$(date +%s)
[ -f "$DATA/manifest.json" ] || $PY -m unclip data build emoji --out "$DATA" --cache "$CACHE" --sizes 64 || exit 1
echo "data ready after $(( $(date +%s) - t0 )) s"

stage() { $PY -m unclip train "$1" --config "$CONFIG" --data "$DATA" --run-dir "$RUN" \
  ${MAX_MINUTES:+--max-minutes "$MAX_MINUTES"} ${MAX_STEPS:+--max-steps "$MAX_STEPS"} > "$RUN/log-$1.txt" 2>&1 \
  && echo "$1 done after $(( $(date +%s) - t0 )) s" || { echo "$1 FAILED"; tail -20 "$RUN/log-$1.txt"; return 1; }; }
wait_for() { while [ ! -f "$1" ]; do [ "$(date +%s)" -lt "$UNCLIP_DEADLINE" ] || return 1; sleep 2; done; }

if [ -n "${STAGES:-}" ]; then
  pids=()
  for s in $STAGES; do stage "$s" & pids+=($!); done
  status=0
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  for s in $STAGES; do echo "== $s"; cat "$RUN/$s/summary.json"; echo; done
  exit $status
fi

( stage tokenizer && stage clip && stage prior ) &
a=$!
( stage movq && wait_for "$RUN/clip/summary.json" && stage decoder && stage inpaint ) &
b=$!
( stage upsampler-256 && stage upsampler-1024 ) &
c=$!
status=0
for p in $a $b $c; do wait $p || status=1; done
for f in "$RUN"/*/summary.json; do echo "== $f"; cat "$f"; echo; done
exit $status
