#!/usr/bin/env bash
# The prepared GPU check: everything worth measuring on a GPU, in one script that prints
# every figure with a label. About 5 to 8 minutes on one GPU:
#
#   1. training throughput at 64x64x3 (benchmarks/train_throughput.py), batch 128 and 512,
#      Atelier's loop in bf16 AMP, then also with training.compile=true, against the seed
#      recipe (PyTorch's examples/dcgan loop) on the same GPU, ratio printed;
#   2. one `kedro run --pipeline=train --env=studio` at 64x64x3 for a few thousand steps in
#      a throw-away copy of the project (its own data/, MLflow store), printing FID and KID;
#   2b. FastGAN's training throughput at 128 and 256 px (bf16, without and with compile)
#      and 2c. a `kedro run --env=fastgan` at 64 px with FID, beside 2.'s studio run;
#   3. DDP with NCCL (`training.devices` = the visible GPU count) when more than one GPU is
#      visible.
#
#   benchmarks/gpu_check.sh [--device cuda|cpu] [--quick] [--images DIR] [--steps N]
#                           [--weights auto|official|PATH] [--python PY]
#
# --device cpu --quick exercises the paths on a CPU in a few minutes (tiny networks, a few
# steps, batches 16 and 64, 100 images, no compile; its figures mean nothing). --images:
# the PNGs for the kedro run (default: the emoji set benchmarks/quality.py fetches into
# ~/.cache/atelier-bench, else the bundled digits). FID uses evaluation.inception_weights
# (auto: the official file in $TORCH_HOME/hub/checkpoints, else a download, else the
# STAND-IN, labelled so); --weights overrides it. Run from anywhere.
#
# Python: the project's .venv (.venv/bin/python, .venv/bin/kedro) where it exists; else,
# or with --python PY, that interpreter (default python3) and `PY -m kedro`, with the
# project's src/ put on PYTHONPATH so that atelier imports without being installed.
# On a bare GPU machine (python3 with PyTorch and the image's packages, no network, no
# .venv): gather the missing wheels here first, with benchmarks/gpu_wheels.sh, which
# prints the whole device call: carry .whl, install it with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# then run `PYTHONPATH=/tmp/site:src bash benchmarks/gpu_check.sh` (benchmarks/README.md,
# "GPU check").
set -euo pipefail

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEVICE=cuda
QUICK=0
IMAGES=""
STEPS=""
WEIGHTS=auto
PY=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --images) IMAGES="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --weights) WEIGHTS="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "--device must be cuda or cpu, got $DEVICE" >&2; exit 2 ;; esac
if [[ -z "$PY" && -x "$PROJECT_ROOT/.venv/bin/python" ]]; then
  PY="$PROJECT_ROOT/.venv/bin/python"; KEDRO=("$PROJECT_ROOT/.venv/bin/kedro")
else
  # No .venv (a bare GPU machine): atelier from src/, the rest from PYTHONPATH (the carried
  # wheels in /tmp/site). Relative entries are made absolute: the kedro runs below start in
  # a throw-away copy of the project.
  PY="${PY:-python3}"
  if [[ "$PY" == */* && "$PY" != /* ]]; then PY="$PWD/$PY"; fi
  KEDRO=("$PY" -m kedro)
  command -v "$PY" >/dev/null || { echo "no Python: $PY" >&2; exit 1; }
  ENTRIES=("$PROJECT_ROOT/src")
  IFS=: read -ra REST <<<"${PYTHONPATH:-}"
  for E in "${REST[@]}"; do
    if [[ -n "$E" ]]; then ENTRIES+=("$([[ "$E" = /* ]] && echo "$E" || echo "$PWD/$E")"); fi
  done
  PYTHONPATH=$(IFS=:; echo "${ENTRIES[*]}"); export PYTHONPATH
  "$PY" -c 'import atelier, kedro, kedro_mlflow, mlflow' || {
    echo "$PY cannot import atelier and its dependencies; on a bare machine install the wheels of benchmarks/gpu_wheels.sh first (see --help)" >&2
    exit 1
  }
fi
if [[ "$DEVICE" == cuda ]] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "--device cuda but torch sees no GPU; use --device cpu --quick to exercise the script" >&2
  exit 1
fi

if [[ $QUICK == 1 ]]; then
  # Tiny networks and few steps: checks the paths, not the speed.
  # bf16 is slow for 8-channel layers on a CPU, hence the small batches there.
  WIDTHS=(--g-width 8 --d-width 8 --latent-dim 16); T_STEPS=2; T_WARMUP=1
  K_STEPS="${STEPS:-20}"; N_IMAGES=100; BATCHES=(128 512)
  if [[ "$DEVICE" == cpu ]]; then BATCHES=(16 64); fi
  K_SIZE="training.g_width=8,training.d_width=8,training.latent_dim=16,training.eval_samples=50"
  K_EVAL="evaluation.num_samples=20,evaluation.fid_dims=64,evaluation.is_splits=2,evaluation.kid_subsets=5,evaluation.kid_subset_size=20,evaluation.grid_size=16"
else
  # The seed recipe's size at 64x64 (pytorch/examples dcgan: nz 100, 64 channels).
  WIDTHS=(--g-width 64 --d-width 64 --latent-dim 100); T_STEPS=300; T_WARMUP=30
  K_STEPS="${STEPS:-3000}"; N_IMAGES=0; BATCHES=(128 512)
  K_SIZE=""  # the studio environment's own networks and batch
  K_EVAL="evaluation.num_samples=2000"
fi
if [[ "$DEVICE" == cpu ]]; then export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"; fi

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/atelier-gpu-check.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
section() { printf '\n=== %s\n' "$*"; }
figure() { printf '%-58s %s\n' "$1:" "$2"; }  # one labelled figure per line

section "machine"
"$PY" - "$DEVICE" <<'EOF'
import platform, sys, torch
device = sys.argv[1]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"{'python:':<59}{sys.executable} ({platform.python_version()})")
print(f"{'torch:':<59}{torch.__version__}")
print(f"{'cpu:':<59}{cpu}, {torch.get_num_threads()} torch threads")
if device == "cuda":
    for i in range(torch.cuda.device_count()):
        print(f"{f'gpu {i}:':<59}{torch.cuda.get_device_name(i)}")
EOF
NGPU=0
if [[ "$DEVICE" == cuda ]]; then NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())'); fi

# ------------------------------------------------------------------ 1. training throughput
section "1. training throughput, 64x64x3, Atelier (bf16 AMP) vs the seed recipe (fp32)"
throughput() {  # batch, extra args...: the benchmark's whole output
  "$PY" "$PROJECT_ROOT/benchmarks/train_throughput.py" --device "$DEVICE" --resolution 64 \
    --channels 3 --batch-size "$1" --steps "$T_STEPS" --warmup "$T_WARMUP" --precision bf16 \
    "${WIDTHS[@]}" "${@:2}" 2>&1
}
rate() { sed -nE "s/^$1.*: ([0-9,]+) images\/s$/\1/p" | tr -d , | sed -n 1p; }
ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }
for BATCH in "${BATCHES[@]}"; do
  OUT=$(throughput "$BATCH") || { echo "$OUT" | tail -30; exit 1; }
  ATELIER=$(rate atelier <<<"$OUT"); PLAIN=$(rate plain <<<"$OUT")
  figure "batch $BATCH, seed recipe (examples/dcgan, fp32)" "$PLAIN images/s"
  figure "batch $BATCH, Atelier bf16" "$ATELIER images/s ($(ratio "$ATELIER" "$PLAIN")x the seed recipe)"
  if [[ "$DEVICE" == cpu && $QUICK == 1 ]]; then
    # Inductor compiles for minutes on a CPU; the GPU check is where compile is measured.
    figure "batch $BATCH, Atelier bf16 + training.compile=true" "skipped with --device cpu --quick"
    continue
  fi
  OUT_C=$(throughput "$BATCH" --compile --skip-plain) || { echo "$OUT_C" | tail -30; exit 1; }
  COMPILED=$(rate atelier <<<"$OUT_C")
  figure "batch $BATCH, Atelier bf16 + training.compile=true" "$COMPILED images/s ($(ratio "$COMPILED" "$PLAIN")x the seed recipe)"
done

kedro_train() {  # env, params: `kedro run --pipeline=train --env=<env>` in $PROJECT; its time and scores
  local start; start=$(date +%s)
  if ! (cd "$PROJECT" && "${KEDRO[@]}" run --pipeline=train --env="$1" --params="$2" >"$SCRATCH/$1.log" 2>&1); then
    echo "$1 kedro run failed; the end of its log:"; tail -40 "$SCRATCH/$1.log"; exit 1
  fi
  figure "$1 kedro run wall time" "$(( $(date +%s) - start )) s"
  "$PY" - "$PROJECT/data/08_reporting/metrics.json" "$1" <<'EOF'
import json, sys
m, env = json.load(open(sys.argv[1])), sys.argv[2]
label = f"{env} FID-{m['dims']}" + (" (STAND-IN weights: NOT FID)" if m.get("inception_weights_warning") else "")
print(f"{label + ':':<59}{m['fid']:.3f} ({m['num_samples']} samples vs {m['num_reference']} validation images)")
print(f"{env + ' KID:':<59}{m['kid']:.5f} +- {m['kid_std']:.5f}")
print(f"{env + ' Inception Score:':<59}{m['inception_score']:.3f} +- {m['inception_score_std']:.3f}")
print(f"{'inception weights sha256:':<59}{m['inception_weights_sha256']}")
EOF
}

# ------------------------------------------------------------------ 2. kedro run, studio environment
section "2. kedro run --pipeline=train --env=studio, 64x64x3, $K_STEPS steps"
PROJECT="$SCRATCH/project"  # a throw-away copy: its own data/ and MLflow store
mkdir -p "$PROJECT/src" "$PROJECT/conf/local" "$PROJECT/data/01_raw/images"
cp -r "$PROJECT_ROOT/conf/base" "$PROJECT_ROOT/conf/studio" "$PROJECT/conf/"
cp "$PROJECT_ROOT/pyproject.toml" "$PROJECT/"
if [[ -z "$IMAGES" ]]; then
  EMOJI="${HOME}/.cache/atelier-bench/emoji-datasource-google-16.0.0/package/img/google/64"
  if [[ -d "$EMOJI" ]]; then IMAGES="$EMOJI"; fi
fi
export MLFLOW_TRACKING_URI="sqlite:///$SCRATCH/mlflow.db"
if [[ -n "$IMAGES" ]]; then
  if [[ $N_IMAGES -gt 0 ]]; then
    find "$IMAGES" -maxdepth 1 -name '*.png' | sort | sed -n "1,${N_IMAGES}p" | xargs -I{} cp {} "$PROJECT/data/01_raw/images/"
  else
    cp -r "$IMAGES"/. "$PROJECT/data/01_raw/images/"
  fi
else
  (cd "$PROJECT" && "${KEDRO[@]}" run --pipeline=sample_data >/dev/null 2>&1)
  if [[ $N_IMAGES -gt 0 ]]; then  # keep the first N_IMAGES digits
    find "$PROJECT/data/01_raw/images" -name '*.png' | sort | tail -n +$((N_IMAGES + 1)) | xargs rm -f
  fi
fi
figure "images" "$(find "$PROJECT/data/01_raw/images" -name '*.png' | wc -l) PNGs from ${IMAGES:-the bundled digits}"
PARAMS="preprocessing.resolution=64,preprocessing.channels=3,training.max_steps=$K_STEPS,training.device=$DEVICE,evaluation.device=$DEVICE,evaluation.inception_weights=$WEIGHTS,$K_EVAL${K_SIZE:+,$K_SIZE}"
kedro_train "studio" "$PARAMS"
grep -m1 -oE "Selected the [a-z]+ generator of step [0-9]+" "$SCRATCH/studio.log" | sed 's/^/model selection: /' || true

# ------------------------------------------------------------------ 2b. FastGAN
section "2b. FastGAN (training.architecture=fastgan) throughput at 128 and 256 px, bf16, without and with compile"
fastgan_throughput() {  # resolution, extra args...: the benchmark's whole output
  "$PY" "$PROJECT_ROOT/benchmarks/train_throughput.py" --device "$DEVICE" \
    --resolution "$1" --channels 3 --batch-size "${BATCHES[0]}" --steps "$T_STEPS" \
    --warmup "$T_WARMUP" --precision bf16 --architecture fastgan --skip-plain \
    $([[ $QUICK == 1 ]] && echo "--g-width 4 --d-width 4 --latent-dim 16" || echo "--g-width 32 --d-width 32 --latent-dim 128") \
    "${@:2}" 2>&1
}
for RES in 128 256; do
  OUT=$(fastgan_throughput "$RES") || { echo "$OUT" | tail -30; exit 1; }
  EAGER=$(rate atelier <<<"$OUT")
  figure "fastgan ${RES}px batch ${BATCHES[0]} bf16" "$EAGER images/s"
  if [[ "$DEVICE" == cpu && $QUICK == 1 ]]; then
    figure "fastgan ${RES}px batch ${BATCHES[0]} bf16 + training.compile=true" "skipped with --device cpu --quick"
    continue
  fi
  OUT_C=$(fastgan_throughput "$RES" --compile) || { echo "$OUT_C" | tail -30; exit 1; }
  figure "fastgan ${RES}px batch ${BATCHES[0]} bf16 + training.compile=true" "$(rate atelier <<<"$OUT_C") images/s ($(ratio "$(rate atelier <<<"$OUT_C")" "$EAGER")x eager)"
done
section "2c. kedro run --pipeline=train --env=fastgan, 64x64x3 (beside 2.), $K_STEPS steps"
cp -r "$PROJECT_ROOT/conf/fastgan" "$PROJECT/conf/"
FPARAMS="training.max_steps=$K_STEPS,training.device=$DEVICE,evaluation.device=$DEVICE,evaluation.inception_weights=$WEIGHTS,training.resume=never,$K_EVAL${K_SIZE:+,$K_SIZE}"
if [[ $QUICK == 1 ]]; then FPARAMS="${FPARAMS/training.g_width=8,training.d_width=8/training.g_width=4,training.d_width=4}"; fi
kedro_train "fastgan" "$FPARAMS"

# ------------------------------------------------------------------ 3. DDP
section "3. DDP (NCCL)"
if [[ "$DEVICE" == cuda && $NGPU -gt 1 ]]; then
  START=$(date +%s)
  if ! (cd "$PROJECT" && "${KEDRO[@]}" run --pipeline=training --env=studio \
        --params="$PARAMS,training.devices=$NGPU,training.max_steps=500,training.eval_every=0,training.resume=never" \
        >"$SCRATCH/ddp.log" 2>&1); then
    echo "DDP kedro run failed; the end of its log:"; tail -40 "$SCRATCH/ddp.log"; exit 1
  fi
  figure "DDP over $NGPU GPUs, 500 steps (kedro run --pipeline=training)" "$(( $(date +%s) - START )) s"
  "$PY" -c 'import sys, pandas as pd; h = pd.read_csv(sys.argv[1]); print(f"{\"DDP images/s (all GPUs, mean of the logged intervals):\":<59}{h.images_per_sec.iloc[1:].mean():,.0f}")' \
    "$PROJECT/data/08_reporting/loss_history.csv"
else
  figure "DDP" "skipped: $([[ "$DEVICE" == cuda ]] && echo "$NGPU GPU visible" || echo "--device cpu") (needs more than one GPU)"
fi
section "done"
