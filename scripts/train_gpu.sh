#!/usr/bin/env bash
# Train the emoji-base model on one GPU inside a fixed time box (default 9 minutes of wall time).
# Three chains run side by side on the one GPU: tokenizer→clip→prior, movq→decoder→inpaint, and the two
# upsamplers. UNCLIP_DEADLINE makes every stage stop and export in time.
#   CONFIG=emoji-base RUN=/tmp/run DATA=/tmp/data CACHE=cache BUDGET_SECONDS=510 scripts/train_gpu.sh
# STAGES="upsampler-256 upsampler-1024" trains just those stages, all side by side, for the whole box (the
# upsamplers need only the build's svg/ folder and manifest.json, no cache). MAX_MINUTES and MAX_STEPS, when
# set, override every stage's limits (a stage on the "time" schedule, as all of emoji-base's are, anneals
# over its time box; one on "steps" follows MAX_STEPS).
# SHIP=<folder> (a device run's $OUT) then packs what was trained to fp16 and leaves there, as flat files that a
# device run brings back: model.tar.part-* (15 MB each; `cat model.tar.part-* | tar -x` gives packed/), logs.tar,
# and eval.json (`unclip eval upsampler` on the bundled model with the newly trained parts in place), and
# cascade.json (`unclip eval cascade`, the independent judge's figures row by row; EVAL_N prompts per kind).
# INIT_FROM=<model folder> (e.g. models/unclip-emoji) warm-starts movq, decoder and inpaint from its weights
# and seeds the run's model folder with it, so that STAGES="decoder inpaint" continues the shipped decoders:
#   INIT_FROM=models/unclip-emoji STAGES="decoder inpaint" SHIP=$OUT scripts/train_gpu.sh
# CHAIN=1 runs STAGES one after another instead, for stages that read what the one before trained (the text
# side for everyday words, issue 15: the prior reads the tuned text tower):
#   CONFIG=emoji-words INIT_FROM=models/unclip-emoji STAGES="clip prior" CHAIN=1 SHIP=$OUT scripts/train_gpu.sh
# BATCH_SIZE overrides every stage's batch: a number, or auto (each stage times a few steps at its config's
# batch, twice it, … and trains at the smallest within 10% of the best rate, its choice and timings in
# RUN/STAGE/batch.json and in logs.tar; meant for stages alone on the GPU, as STAGES runs them).
# DATA_LOCALES=en builds the dataset with English captions only (what scripts/gpu_prepare.sh's npm cache holds).
# STAGES without CHAIN and without MAX_MINUTES: every stage trains for the whole box (the budget left after the
# data build, less SHIP_SECONDS for packing). movq beside the decoders is refused (they encode with the
# autoencoder they start with): CHAIN=1. With SHIP, logs.tar is refreshed every 30 s while the stages run.
# On a device machine, run it through scripts/gpu_run.sh (prepared here by scripts/gpu_prepare.sh).
set -uo pipefail
CONFIG=${CONFIG:-emoji-base}
RUN=${RUN:-runs/$CONFIG}
DATA=${DATA:-data/emoji-64}
CACHE=${CACHE:-cache}
BUDGET=${BUDGET_SECONDS:-510}
PY=${PYTHON:-python3}
export UNCLIP_DEADLINE=$(( $(date +%s) + BUDGET ))
export PYTHONUNBUFFERED=1
INIT=${INIT_FROM:-}
mkdir -p "$RUN"
if [ -n "$INIT" ] && [ ! -d "$RUN/model" ]; then
  cp -a "$INIT" "$RUN/model" || exit 1  # the parts the stages read (CLIP, movq) and start from
fi

t0=$(date +%s)
$PY -c "import unclip, diffusers" || { echo "python cannot import unclip and diffusers: on a device, run" \
  "scripts/gpu_run.sh (it installs the carried wheels and sets PYTHONPATH)"; exit 1; }
if [ -n "${STAGES:-}" ] && [ -z "${CHAIN:-}" ] && [[ " $STAGES " == *" movq "* ]] \
  && [[ " $STAGES " == *" decoder "* || " $STAGES " == *" inpaint "* ]]; then
  echo "movq beside decoder/inpaint: the decoders would learn the latents of the autoencoder they started" \
    "with; set CHAIN=1 (movq, then the decoders)"; exit 1
fi
[ -f "$DATA/manifest.json" ] || $PY -m unclip data build emoji --out "$DATA" --cache "$CACHE" --sizes 64 \
  ${DATA_LOCALES:+--locales "$DATA_LOCALES"} || exit 1
echo "data ready after $(( $(date +%s) - t0 )) s"
if [ -n "${STAGES:-}" ] && [ -z "${MAX_MINUTES:-}" ] && [ -z "${CHAIN:-}" ]; then
  # side by side, every stage gets the whole box (its time schedule anneals over it), less SHIP_SECONDS
  MAX_MINUTES=$(( (UNCLIP_DEADLINE - $(date +%s) - ${SHIP_SECONDS:-60}) / 6 ))
  MAX_MINUTES=$(( MAX_MINUTES < 1 ? 1 : MAX_MINUTES ))  # tenths of a minute
  MAX_MINUTES="$(( MAX_MINUTES / 10 )).$(( MAX_MINUTES % 10 ))"
  echo "each stage trains for $MAX_MINUTES minutes"
fi
if [ -n "${SHIP:-}" ]; then  # the logs so far come back even if the call is cut off
  mkdir -p "$SHIP"
  ( while sleep 30; do (cd "$RUN" && tar -cf "$SHIP/.logs.tar" $(ls -d log-*.txt ./*/metrics.csv ./*/batch.json 2>/dev/null) \
      && mv "$SHIP/.logs.tar" "$SHIP/logs.tar") 2>/dev/null; done ) &
  logger=$!
  trap 'kill $logger 2>/dev/null' EXIT
fi

stage() { $PY -m unclip train "$1" --config "$CONFIG" --data "$DATA" --run-dir "$RUN" \
  ${MAX_MINUTES:+--max-minutes "$MAX_MINUTES"} ${MAX_STEPS:+--max-steps "$MAX_STEPS"} ${INIT:+--init-from "$INIT"} \
  ${BATCH_SIZE:+--batch-size "$BATCH_SIZE"} > "$RUN/log-$1.txt" 2>&1 \
  && echo "$1 done after $(( $(date +%s) - t0 )) s" || { echo "$1 FAILED"; tail -20 "$RUN/log-$1.txt"; return 1; }; }
ship() {
  [ -n "${SHIP:-}" ] || return 0
  SHIP=$(realpath -m "$SHIP") RUN=$(realpath -m "$RUN")
  kill "${logger:-}" 2>/dev/null; rm -f "$SHIP/.logs.tar"
  mkdir -p "$SHIP" && $PY -m unclip pack-model "$RUN/model" "$RUN/packed" >/dev/null || return 1
  tar -C "$RUN" -cf - packed | split -b 15M - "$SHIP/model.tar.part-"
  (cd "$RUN" && tar -cf "$SHIP/logs.tar" $(ls -d log-*.txt ./*/metrics.csv ./*/summary.json ./*/batch.json 2>/dev/null))
  local m="$RUN/eval-model" p
  rm -rf "$m" && mkdir -p "$m"
  for p in models/unclip-emoji/*; do ln -s "$PWD/$p" "$m/"; done
  for p in "$RUN"/packed/*/; do p=$(basename "$p"); rm -f "$m/$p"; ln -s "$RUN/packed/$p" "$m/$p"; done
  [ -z "${SKIP_EVAL:-}" ] || return 0  # the model is not all there (a call that carried only some parts)
  $PY -m unclip eval upsampler --model "$m" --data "$DATA" --out "$SHIP/eval.json" > "$RUN/log-eval.txt" 2>&1 \
    && cat "$SHIP/eval.json" || { echo "eval FAILED"; tail -20 "$RUN/log-eval.txt"; return 1; }
  $PY -m unclip eval cascade --model "$m" --data "$DATA" ${EVAL_N:+--n "$EVAL_N"} --out "$SHIP/cascade.json" \
    > "$RUN/log-cascade.txt" 2>&1 && grep -v Loading "$RUN/log-cascade.txt" | head -30 \
    || { echo "cascade FAILED"; tail -20 "$RUN/log-cascade.txt"; return 1; }
}
wait_for() { while [ ! -f "$1" ]; do [ "$(date +%s)" -lt "$UNCLIP_DEADLINE" ] || return 1; sleep 2; done; }

if [ -n "${STAGES:-}" ]; then
  pids=()
  status=0
  if [ -n "${CHAIN:-}" ]; then
    for s in $STAGES; do stage "$s" || { status=1; break; }; done
  else
    for s in $STAGES; do stage "$s" & pids+=($!); done
  fi
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  for s in $STAGES; do echo "== $s"; cat "$RUN/$s/summary.json"; echo; done
  ship || status=1
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
ship || status=1
exit $status
