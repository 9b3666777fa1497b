#!/usr/bin/env bash
# device-check: issue 24's checks on the GPU machine, which may have no Node.js, in one command
# (docs/device-check.md gives the `run` call and its carry list). In order, so that what needs no
# build has its figures even if the CUDA build runs long:
#   peft   scripts/peft-check.py: real transformers + PEFT on our exported adapters (cpu, cuda)
#   torch  scripts/bench-peft-step.py: the TinyLlama-shape LoRA step in PyTorch + peft bf16 (cuda)
#   amx    a CPU-only text2sql-check (cmake); if lscpu shows amx_bf16: the AMX kernel's 12 cases on
#          the real tiles, the CPU step with TEXT2SQL_AMX=auto against =0, and PyTorch bf16 on the
#          same cores; else the lscpu line that shows there is none
#   cuda   ggml with CUDA for sm_90 and text2sql-check against it (cmake, ninja): every check with
#          --backend cuda (gradients, agreement with the CPU, AdamW; no op may fall back to the CPU:
#          engine_init refuses) and the step timed at 256 and 1,024 tokens (bf16, r=8 on q and v)
# A table of the key lines comes last; everything goes to $OUT/device-check.log too.
#
#   bash scripts/device-check.sh                 on the device (all sections)
#   bash scripts/device-check.sh --only cuda     some sections (comma-separated: peft,torch,amx,cuda)
#   bash scripts/device-check.sh --cpu           a rehearsal on a machine without a GPU: the same steps
#                                                without CUDA, on short runs (PEFT_PYTHON picks the python)
#
# Inputs: `npm run device-files` writes build/device/ (the PEFT check's checkpoints and adapters,
# the tiny test model); ggml's source is $LLAMA_CPP_DIR (default node_modules/.cache/text2sql/
# llama.cpp, whose ggml/ folder the call carries). Builds are incremental (build-cpu/, build-cuda/):
# a rerun on a still-warm machine continues them.
set -uo pipefail
cd "$(dirname "$0")/.."
cpu_only=0
sections=peft,torch,amx,cuda
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) cpu_only=1 ;;
    --only)
      sections=$2
      shift
      ;;
    *)
      echo "usage: device-check.sh [--cpu] [--only peft,torch,amx,cuda]"
      exit 2
      ;;
  esac
  shift
done
OUT=${OUT:-/tmp/text2sql-device-check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device-check.log") 2>&1
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-$PWD/node_modules/.cache/text2sql/llama.cpp}
PY=${PEFT_PYTHON:-python3}
JOBS=$(nproc)
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1
failed=0
summary=()
want() { [[ ",$sections," == *",$1,"* ]]; }
note() { # a line for the closing table
  summary+=("$*")
  echo "-- $*"
}
STEPS=/tmp/text2sql-device-check-steps # each step's output (at most 8 files come back from $OUT)
rm -rf "$STEPS" && mkdir -p "$STEPS"
step() { # step NAME SECONDS CMD...: runs CMD under a time limit into $STEPS/NAME.txt, says how it ended, counts failures
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "== $name: $*"
  timeout "$limit" "$@" 2>&1 | tee "$STEPS/$name.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 124 ] && echo "== $name: TIMED OUT after $limit s"
  echo "== $name: exit $rc in $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || {
    failed=$((failed + 1))
    note "$name: FAILED (exit $rc)"
  }
  return "$rc"
}
keep() { # keep STEP PATTERN [PREFIX]: the step's matching output lines into the closing table
  while IFS= read -r l; do note "${3:-}$l"; done < <(grep -E "$2" "$STEPS/$1.txt")
}

echo "== machine"
date -u
lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core)'
uptime
amx=0
grep -q -w amx_bf16 /proc/cpuinfo && amx=1
[ $cpu_only -eq 0 ] && {
  nvidia-smi -L
  nvcc --version | tail -2
}
cmake --version | head -1
$PY -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)' ||
  echo "(no torch/transformers/peft in $PY)"
have_peft=0
$PY -c 'import torch, transformers, peft' 2>/dev/null && have_peft=1

# ---- peft: real transformers + PEFT on our adapters (needs no build) ----
if want peft; then
  step peft-files 60 python3 scripts/peft-check.py --files-only
  if [ $have_peft -eq 1 ]; then
    devs=cpu,cuda
    [ $cpu_only -eq 1 ] && devs=cpu
    step peft 300 $PY scripts/peft-check.py --device "$devs" --json-out "$OUT/peft-check.json"
    keep peft '^peft family='
  else
    note "peft: SKIPPED, $PY has no torch/transformers/peft (set PEFT_PYTHON)"
  fi
fi

# ---- torch: PyTorch + peft bf16, the same step on the GPU (needs no build) ----
if want torch; then
  if [ $have_peft -eq 0 ]; then
    note "torch: SKIPPED, $PY has no torch/transformers/peft"
  elif [ $cpu_only -eq 1 ]; then
    note "torch: no GPU here; the script rehearsed on a tiny shape"
    step torch-rehearsal 120 $PY scripts/bench-peft-step.py --device cpu --shape tiny --tokens 16,32 --steps 2
    keep torch-rehearsal '"bench"'
  else
    step torch-cuda 240 $PY scripts/bench-peft-step.py --device cuda --tokens 256,1024 --steps 5
    keep torch-cuda '"bench"'
  fi
fi

[ -f "$LLAMA_CPP_DIR/ggml/CMakeLists.txt" ] || {
  want amx || want cuda && note "FAILED: no ggml source at $LLAMA_CPP_DIR/ggml (carry node_modules/.cache/text2sql/llama.cpp/ggml)"
  sections=${sections//amx/}
  sections=${sections//cuda/}
  failed=$((failed + 1))
}
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
build() { # build DIR [cmake flags...]: text2sql-check and only the ggml targets it needs
  local dir=$1
  shift
  step "configure-$dir" 120 cmake -S . -B "$dir" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CPP_DIR="$LLAMA_CPP_DIR" \
    -DTEXT2SQL_CHECK_ONLY=ON "$@" || return 1
  step "build-$dir" 480 cmake --build "$dir" --target text2sql-check -j "$JOBS"
}
TINY=build/device/models/tiny-f32.gguf
MODELS=${TMPDIR:-/tmp}/text2sql-device-models # not under build/device: that folder travels (64 MiB)
TL=$MODELS/tinyllama-bf16.gguf
models() { # the tiny test model (npm run device-files) or one the program writes; TinyLlama-shaped bf16
  local bin=$1
  if [ ! -f "$TINY" ]; then
    note "models: $TINY did not travel (npm run device-files); using the program's random tiny model"
    TINY=$MODELS/random-tiny-f32.gguf
    [ -f "$TINY" ] || step write-tiny 60 "$bin" --write-model "$TINY" --shape tiny --type f32
  fi
  [ -f "$TL" ] || step write-tinyllama 120 "$bin" --write-model "$TL" --shape tinyllama --type bf16
}
mkdir -p "$MODELS"

# ---- amx: the AMX-BF16 kernel on the real tiles, and the CPU step with and without it ----
if want amx && build build-cpu -DTEXT2SQL_CUDA=OFF; then
  BIN=build-cpu/Release/text2sql-check
  models "$BIN"
  step amx-emulated 120 "$BIN" --checks amx --threads "$JOBS"
  keep amx-emulated '^amx '
  if [ $amx -eq 1 ]; then
    step amx-hw 120 "$BIN" --checks amx-hw --threads "$JOBS"
    keep amx-hw '^(amx |FAILED)'
    for mode in auto 0; do
      step "cpu-step-amx-$mode" 240 env TEXT2SQL_AMX=$mode "$BIN" --model "$TL" --backend cpu --checks none --time 256 --iters 3 \
        --threads "$JOBS"
      keep "cpu-step-amx-$mode" '^time ' "TEXT2SQL_AMX=$mode "
    done
    [ $have_peft -eq 1 ] && {
      step torch-cpu 300 $PY scripts/bench-peft-step.py --device cpu --threads "$JOBS" --tokens 256 --steps 3
      keep torch-cpu '"bench"'
    }
  else
    note "amx: the real-tile checks and the AMX timings are SKIPPED: /proc/cpuinfo has no amx_bf16; lscpu says:"
    note "$(lscpu | grep -E '^Model name')"
    note "$(lscpu | grep -E '^Flags' | grep -o -E 'avx512[a-z_0-9]*|amx[a-z_0-9]*' | sort -u | tr '\n' ' ' | sed 's/^/flags (avx512*, amx*): /')"
    # still time the CPU step once, a short one (the step's code path on this CPU)
    [ $cpu_only -eq 1 ] && step cpu-step 300 "$BIN" --model "$TL" --backend cpu --checks none --time 32 --iters 1 &&
      keep cpu-step '^time '
  fi
fi

# ---- cuda: ggml with CUDA for the H100 and every check on it ----
if want cuda; then
  if [ $cpu_only -eq 1 ]; then
    note "cuda: SKIPPED, --cpu (no GPU here: the CUDA build and its checks run on the device only); the same checks on the CPU build:"
    [ -x build-cpu/Release/text2sql-check ] && models build-cpu/Release/text2sql-check &&
      step checks-cpu 300 build-cpu/Release/text2sql-check --model "$TINY" --backend cpu &&
      keep checks-cpu '^(backend|grad|adamw|agree|FAILED)'
  elif build build-cuda -DTEXT2SQL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90; then
    BIN=build-cuda/Release/text2sql-check
    models "$BIN"
    step checks-cuda 300 "$BIN" --model "$TINY" --backend cuda
    keep checks-cuda '^(backend|grad|adamw|agree|FAILED)'
    step checks-cpu 300 "$BIN" --model "$TINY" --backend cpu
    keep checks-cpu '^(backend|agree|FAILED)'
    step time-cuda 240 "$BIN" --model "$TL" --backend cuda --checks none --time 256,1024 --iters 5
    keep time-cuda '^(time |FAILED)'
  fi
fi

echo
echo "== device-check summary ($(date -u +%H:%M:%S) UTC, $SECONDS s)"
for l in "${summary[@]}"; do echo "$l"; done
echo "== device-check: $failed step(s) failed"
printf '%s\n' "${summary[@]}" "failed steps: $failed" >"$OUT/summary.txt"
[ $failed -eq 0 ]
