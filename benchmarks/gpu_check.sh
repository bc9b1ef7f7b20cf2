#!/usr/bin/env bash
# Is salpipe ready for this GPU? One script, at most 8 minutes on one GPU, every result
# collected into one JSON file.
#
#   benchmarks/gpu_check.sh [--device cuda|cpu] [--out FILE] [--data DIR] [--work DIR]
#                           [--quick] [--dry-run] [--help]
#
# Steps, in order, each under its own time limit and all under one 8-minute deadline
# (a step that runs out is killed and recorded as timed out; the rest still run):
#   1. pytest -m gpu: the CUDA-marked tests (they skip without CUDA);
#   2. benchmarks/precompute.py, epoch_cost.py, stream.py, train_speed.py and
#      precision.py with --device DEVICE (their printed tables go into the JSON);
#   3. one epoch of a ResNet-34 PGD-AT student (config/train/cifar_quick.yaml, the
#      cifar_quick threat: PGD-3 of 8/255, step 2.5/255) on the CIFAR-10 subset, then
#      salpipe evaluate with the pgd20 preset (PGD-20 at 1, 2, 4, 8/255, fp32).
#
# Options:
#   --device D   cuda (default when CUDA is present) or cpu.
#   --out FILE   the JSON file (default: $OUT/gpu_check.json when $OUT is set, else
#                gpu_check.json in the working folder).
#   --data DIR   the shared data folder holding cifar10/cifar-10-batches-py (default
#                ../shared/data beside the repo); without it the student trains on
#                the synthetic `shapes` data set (the JSON says which).
#   --work DIR   scratch folder for the store, the run and the logs (default: a
#                temporary folder, removed at the end).
#   --quick      reduced sizes, for a CPU (256 training and 32 evaluation images,
#                ResNet-34 at width 16, small benchmark sizes).
#   --time-scale K  multiply every time limit and the deadline by K (default 1; a
#                shared CPU may need 3 or more).
#   --dry-run    write the JSON with the planned commands and run nothing.
# Environment: PYTHON (default .venv/bin/python, else python3).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEVICE="" OUTFILE="" DATA="$REPO/../shared/data" WORK="" QUICK=0 DRY=0
DEADLINE_S=460 SCALE=1  # 460 s + the last kill grace (10 s) + the JSON: under 8 minutes

usage() { sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="${2:-}"; shift 2 ;;
    --out) OUTFILE="${2:-}"; shift 2 ;;
    --data) DATA="${2:-}"; shift 2 ;;
    --work) WORK="${2:-}"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --time-scale) SCALE="${2:-}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

cd "$REPO" || exit 1
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [ -z "$DEVICE" ]; then
  DEVICE=$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")' \
           2>/dev/null || echo cpu)
fi
case "$SCALE" in
  ''|*[!0-9]*|0) echo "gpu_check.sh: --time-scale must be a positive integer" >&2; exit 2 ;;
esac
DEADLINE_S=$(( DEADLINE_S * SCALE ))
case "$DEVICE" in
  cuda|cpu) ;;
  *) echo "gpu_check.sh: --device must be cuda or cpu, not '$DEVICE'" >&2; exit 2 ;;
esac
if [ -z "$OUTFILE" ]; then
  if [ -n "${OUT:-}" ]; then OUTFILE="$OUT/gpu_check.json"; else OUTFILE="$PWD/gpu_check.json"; fi
fi
KEEP=1
if [ -z "$WORK" ]; then WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"; KEEP=0; fi
mkdir -p "$WORK/logs" "$(dirname "$OUTFILE")"
STEPS="$WORK/steps.tsv"
: > "$STEPS"

RUN="$WORK/student" RESULTS="$WORK/pgd20.parquet"
SAL=("$PY" -m cli --device "$DEVICE")
if [ "$QUICK" = 1 ]; then
  LIMIT=(-p limit=256) WIDTH=(--width 16) NEVAL=32 TEST_LIMIT=64
  B_PRE=(--batch 32 --loop-images 4 --repeats 1)
  B_EPOCH=(--n 64 --batch 32 --rounds 1 --methods standard,pgd_at,sat)
  B_STREAM=(--n 1024 --steps 2) B_SPEED=(--steps 1)
  B_PREC=(--steps 1 --rounds 1 --no-compile --variants fp32,bf16,bf16+channels_last)
else
  LIMIT=() WIDTH=() NEVAL=1000 TEST_LIMIT=1000
  B_PRE=() B_EPOCH=() B_STREAM=() B_SPEED=(--steps 10)
  B_PREC=(--steps 5 --rounds 2 --variants fp32,bf16,channels_last,bf16+channels_last,compile)
fi
CIFAR="$DATA/cifar10/cifar-10-batches-py"
if [ -d "$CIFAR" ]; then
  DATASET=cifar10 PREP=(--dataset cifar10 --root "$CIFAR" "${LIMIT[@]}")
elif [ "$QUICK" = 1 ]; then
  DATASET=shapes PREP=(--dataset shapes -p n_train=256 -p n_test=64)
else
  DATASET=shapes PREP=(--dataset shapes -p n_train=10000 -p n_test=1000)
fi
STORE="$WORK/$DATASET.zarr"

START=$(date +%s)
# step NAME LIMIT_S COMMAND...: runs COMMAND (output in logs/NAME.log) within LIMIT_S
# seconds and within what is left of the deadline; one TSV row per step
step() {
  local name="$1" limit=$(( $2 * SCALE )); shift 2
  local left=$(( DEADLINE_S - ($(date +%s) - START) ))
  [ "$left" -lt "$limit" ] && limit="$left"
  local cmd; printf -v cmd '%q ' "$@"
  if [ "$DRY" = 1 ]; then
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "planned" "0" "$limit" "$cmd" >> "$STEPS"; return 0
  fi
  if [ "$limit" -le 0 ]; then
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "skipped" "0" "0" "$cmd" >> "$STEPS"; return 0
  fi
  echo "== $name (limit ${limit}s): $cmd" >&2
  local t0; t0=$(date +%s%N)
  PYTHONUNBUFFERED=1 timeout --kill-after=10 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1
  local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  local dt; printf -v dt '%d.%03d' $((ms / 1000)) $((ms % 1000))
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$dt" "$limit" "$cmd" >> "$STEPS"
  tail -n 3 "$WORK/logs/$name.log" >&2
  return 0
}

step pytest_gpu 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests
step precompute 40 "$PY" benchmarks/precompute.py --device "$DEVICE" "${B_PRE[@]}"
step epoch_cost 45 "$PY" benchmarks/epoch_cost.py --device "$DEVICE" "${B_EPOCH[@]}"
step stream 30 "$PY" benchmarks/stream.py --device "$DEVICE" "${B_STREAM[@]}"
step train_speed 25 "$PY" benchmarks/train_speed.py --device "$DEVICE" "${B_SPEED[@]}"
step precision 100 "$PY" benchmarks/precision.py --device "$DEVICE" "${B_PREC[@]}"
step prepare_data 40 "${SAL[@]}" prepare-data "${PREP[@]}" --store "$STORE"
step train_student 75 "${SAL[@]}" train --store "$STORE" --method pgd_at --arch resnet34 \
  "${WIDTH[@]}" --config config/train/cifar_quick.yaml --epochs 1 \
  -s test_limit="$TEST_LIMIT" -p steps=3 -p eps=8/255 -p step_size=2.5/255 --out "$RUN"
step evaluate_pgd20 60 "${SAL[@]}" evaluate --model "$RUN" --store "$STORE" \
  --preset pgd20 --n "$NEVAL" --out "$RESULTS"

"$PY" - "$STEPS" "$WORK" "$OUTFILE" "$DEVICE" "$DATASET" "$QUICK" "$DRY" \
  "$(( $(date +%s) - START ))" <<'EOF'
import json, platform, sys
from pathlib import Path

steps_file, work, out, device, dataset, quick, dry, total = sys.argv[1:]
work = Path(work)
steps = {}
for line in Path(steps_file).read_text().splitlines():
    name, rc, secs, limit, cmd = line.split("\t", 4)
    log = work / "logs" / f"{name}.log"
    text = log.read_text(errors="replace") if log.is_file() else ""
    # drop progress-bar redraws; keep the tables the benchmarks print
    lines = [ln for ln in text.replace("\r", "\n").splitlines()
             if ln.strip() and "it/s]" not in ln and "block/s]" not in ln]
    steps[name] = {"status": "ok" if rc == "0" else {"124": "timed out", "137": "timed out"}
                   .get(rc, rc if rc in ("planned", "skipped") else f"failed (exit {rc})"),
                   "seconds": round(float(secs), 1), "limit_s": int(limit),
                   "command": cmd.strip(), "output": lines[-40:]}
result = {"device": device, "dataset": dataset, "quick": quick == "1",
          "dry_run": dry == "1", "total_seconds": int(total), "steps": steps}
if dry != "1":  # (a dry run stays cheap: no torch import)
    try:
        import torch
        result["torch"] = torch.__version__
        result["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception as e:  # noqa: BLE001
        result["torch"] = f"unavailable: {e}"
result["host"] = platform.node()
run = work / "student"
if (run / "metrics.jsonl").is_file():
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    side = json.loads((run / "model.json").read_text()) if (run / "model.json").is_file() else {}
    result["student"] = {"metrics": rows[-1] if rows else None,
                         "train": side.get("train"), "stream": side.get("stream")}
res = work / "pgd20.parquet"
if res.is_file():
    import pandas as pd
    df = pd.read_parquet(res)
    keep = [c for c in ("attack", "eps", "metric", "value", "n", "seconds", "flags")
            if c in df.columns]
    result["evaluation"] = df[keep].to_dict(orient="records")
Path(out).write_text(json.dumps(result, indent=1, default=str) + "\n")
bad = [n for n, s in steps.items() if s["status"] not in ("ok", "planned")]
word = "planned" if dry == "1" else "ok"
print(f"gpu_check: {len(steps) - len(bad)}/{len(steps)} steps {word} in {total} s"
      + (f"; not ok: {', '.join(bad)}" if bad else "") + f"; wrote {out}")
EOF
rc=$?
[ "$KEEP" = 0 ] && rm -rf "$WORK"
exit $rc
