#!/usr/bin/env bash
# GPU check (issue 15): the CUDA path is exercised whenever a GPU exists. Runs the GPU unit tests
# (tests/hashing/encoders/test_gpu.py, tests/pipeline/test_extract_gpu.py) and a short throughput benchmark
# (benchmarks/throughput.py --device cuda), and writes OUT_DIR/gpu_check.json. On a machine where torch sees no CUDA
# GPU it writes {"skipped": true, ...} and exits 0, so it can run anywhere. See benchmarks/README.md, "GPU check".
#
#   benchmarks/gpu_check.sh [OUT_DIR]        # default OUT_DIR: gpu-check-<date>
#
# Environment: GPU_CHECK_BUDGET_S (default 450: the steps' time limit, under 8 minutes once .venv exists),
# GPU_CHECK_VIDEOS / GPU_CHECK_LONG_VIDEOS (benchmark collection, default 16 / 2),
# GPU_CHECK_REQUIRE_GPU=1 (fail instead of skipping when torch sees no GPU, e.g. on a machine meant to have one).
# Installs nothing beyond `make test`'s environment (.venv, created with `make install` if missing).
# Exit status: 0 when skipped or when tests and benchmark passed, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY=.venv/bin/python
BUDGET_S="${GPU_CHECK_BUDGET_S:-450}"
VIDEOS="${GPU_CHECK_VIDEOS:-16}"
LONG_VIDEOS="${GPU_CHECK_LONG_VIDEOS:-2}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false  # as `make test` runs

log() { printf '[gpu_check] %s\n' "$*"; }

if [ ! -x "$PY" ]; then
  log "no .venv: creating make test's environment with 'make install' (not counted in the time budget)"
  make install
fi

STARTED=$(date +%s)
DEADLINE=$((STARTED + BUDGET_S))

# Seconds a step may take: its own cap, but never past the overall deadline (at least 10 s, so it can report).
step_timeout() {
  local cap=$1 left=$((DEADLINE - $(date +%s)))
  [ "$left" -lt 10 ] && left=10
  [ "$cap" -lt "$left" ] && echo "$cap" || echo "$left"
}

# Writes $OUT/gpu_check.json from the environment variables set below (python: jq is not part of the environment);
# returns 1 unless the check is ok. On a GPU machine a GPU test that skipped for another reason than "needs at least
# 2 GPUs" (e.g. Ray found no GPU) makes it not ok: the CUDA path was not exercised.
write_summary() {
  SECONDS_TOTAL=$(($(date +%s) - STARTED)) timeout 60 "$PY" - "$OUT" <<'EOF'
import json, os, sys
import xml.etree.ElementTree as ET
from pathlib import Path

out = Path(sys.argv[1])
env = os.environ.get
torch_info = json.loads((out / "torch.json").read_text()) if (out / "torch.json").is_file() else {}
summary = {"skipped": env("GC_SKIPPED") == "1", "reason": env("GC_REASON") or None,
           "ok": env("GC_OK") == "1", "seconds": int(env("SECONDS_TOTAL", "0")),
           "torch": torch_info.get("torch"), "cuda": torch_info.get("cuda_build"),
           "cudnn": torch_info.get("cudnn"), "gpus": torch_info.get("gpus", []),
           "nvidia_smi": (out / "nvidia-smi.txt").read_text().strip() if (out / "nvidia-smi.txt").is_file() else None}
junit = out / "gpu-tests.xml"
if env("GC_TESTS_RC") is not None:
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    skip_reasons = []
    if junit.is_file():
        root = ET.parse(junit).getroot()
        for suite in root.iter("testsuite"):
            for key in counts:
                counts[key] += int(suite.get(key, 0))
        skip_reasons = [skipped.get("message", "") for skipped in root.iter("skipped")]
    unexpected = sorted({reason for reason in skip_reasons if "at least 2" not in reason})
    summary["tests"] = {"exit_code": int(env("GC_TESTS_RC")), "seconds": int(env("GC_TESTS_S", "0")),
                        "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
                        "failed": counts["failures"] + counts["errors"], "skipped": counts["skipped"],
                        "skip_reasons": sorted(set(skip_reasons)), "unexpected_skips": unexpected,
                        "junit_xml": str(junit) if junit.is_file() else None}
    summary["ok"] = summary["ok"] and not unexpected
if env("GC_BENCH_STATUS") is not None:
    bench_json = out / "throughput.json"
    summary["benchmark"] = {"status": env("GC_BENCH_STATUS"), "exit_code": int(env("GC_BENCH_RC", "-1")),
                            "seconds": int(env("GC_BENCH_S", "0")), "command": env("GC_BENCH_CMD"),
                            "json": str(bench_json) if bench_json.is_file() else None,
                            "log": str(out / "throughput.log")}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"[gpu_check] wrote {out / 'gpu_check.json'}")
sys.exit(0 if summary["ok"] else 1)
EOF
}

# --- what is there ------------------------------------------------------------------------------------------------
SMI_GPUS=0
if command -v nvidia-smi >/dev/null 2>&1; then
  if timeout 30 nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used \
       --format=csv >"$OUT/nvidia-smi.txt" 2>&1; then
    SMI_GPUS=$(($(wc -l <"$OUT/nvidia-smi.txt") - 1))
  fi
  log "nvidia-smi:"
  sed 's/^/  /' "$OUT/nvidia-smi.txt"
else
  log "nvidia-smi not found"
fi

if ! timeout "$(step_timeout 120)" "$PY" - >"$OUT/torch.json" <<'EOF'; then
import json, torch
cuda = torch.cuda.is_available()
print(json.dumps({"torch": torch.__version__, "cuda_build": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version() if cuda else None, "cuda_available": cuda,
                  "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []}))
EOF
  log "could not import torch from $PY (see above); is the environment broken? try 'make install'"
  GC_OK=0 GC_REASON="torch could not be imported" write_summary || true
  exit 1
fi
log "torch: $(cat "$OUT/torch.json")"

if ! "$PY" -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["cuda_available"] else 1)' "$OUT/torch.json"
then
  reason="no CUDA GPU visible to torch (torch.cuda.is_available() is False)"
  if [ "$SMI_GPUS" -gt 0 ]; then
    # A GPU the driver shows but torch cannot use is a broken setup, not a CPU machine: say so loudly.
    reason="$reason, although nvidia-smi lists $SMI_GPUS GPU(s): check the driver against torch's CUDA build"
    log "WARNING: $reason"
  fi
  log "no CUDA GPU visible to torch: skipping GPU checks"
  if [ "${GPU_CHECK_REQUIRE_GPU:-0}" = 1 ]; then
    GC_OK=0 GC_REASON="$reason (GPU_CHECK_REQUIRE_GPU=1)" write_summary || true
    exit 1
  fi
  GC_SKIPPED=1 GC_OK=1 GC_REASON="$reason" write_summary
  exit 0
fi

# --- GPU unit tests -----------------------------------------------------------------------------------------------
# `-p hashing -p pipeline` imports the real packages first: tests/conftest.py puts tests/ on sys.path, and a run of
# single files under --import-mode=importlib would otherwise take tests/hashing and tests/pipeline for them.
TESTS=(tests/hashing/encoders/test_gpu.py tests/pipeline/test_extract_gpu.py)
log "GPU unit tests: ${TESTS[*]}"
t0=$(date +%s)
if timeout --kill-after=30 "$(step_timeout 180)" "$PY" -m pytest -q -p hashing -p pipeline -p no:cacheprovider \
     --junitxml="$OUT/gpu-tests.xml" "${TESTS[@]}"; then
  tests_rc=0
else
  tests_rc=$?
fi
tests_s=$(($(date +%s) - t0))
[ "$tests_rc" = 124 ] && log "GPU unit tests timed out after ${tests_s} s"
log "GPU unit tests: exit $tests_rc in ${tests_s} s"

# --- throughput benchmark on the GPU ------------------------------------------------------------------------------
BENCH=benchmarks/throughput.py
bench_rc=-1 bench_s=0 bench_status=missing bench_cmd=""
if [ ! -f "$BENCH" ]; then
  log "$BENCH not found: cannot run the throughput benchmark on the GPU"
else
  # A short run: the quick collection, sized by GPU_CHECK_VIDEOS / GPU_CHECK_LONG_VIDEOS. The memory and standalone
  # runs measure Ray/Prefect start-up, not the GPU, so they are left out when the benchmark offers to.
  bench_args=(--device cuda --quick --videos "$VIDEOS" --long-videos "$LONG_VIDEOS" --out "$OUT/throughput.json")
  bench_help=$(timeout 120 "$PY" "$BENCH" --help 2>/dev/null || true)
  for flag in --no-rss --no-standalone; do
    if grep -q -- "$flag" <<<"$bench_help"; then bench_args+=("$flag"); fi
  done
  bench_cmd="$PY $BENCH ${bench_args[*]}"
  log "throughput benchmark: $bench_cmd"
  t0=$(date +%s)
  if timeout --kill-after=30 "$(step_timeout 300)" "$PY" "$BENCH" "${bench_args[@]}" 2>&1 | tee "$OUT/throughput.log"; then
    bench_rc=0
  else
    bench_rc=${PIPESTATUS[0]}
  fi
  bench_s=$(($(date +%s) - t0))
  if [ "$bench_rc" = 0 ] && [ -f "$OUT/throughput.json" ]; then
    bench_status=passed
  elif [ "$bench_rc" = 124 ]; then
    bench_status=timed-out
  else
    bench_status=failed
  fi
  log "throughput benchmark: $bench_status (exit $bench_rc) in ${bench_s} s"
fi

ok=0
[ "$tests_rc" = 0 ] && [ "$bench_status" = passed ] && ok=1
if ! GC_OK=$ok GC_TESTS_RC=$tests_rc GC_TESTS_S=$tests_s GC_BENCH_STATUS=$bench_status GC_BENCH_RC=$bench_rc \
     GC_BENCH_S=$bench_s GC_BENCH_CMD="$bench_cmd" write_summary; then
  ok=0  # also when GPU tests skipped on this GPU machine (unexpected_skips in the JSON)
fi
log "done in $(($(date +%s) - STARTED)) s: $([ "$ok" = 1 ] && echo passed || echo FAILED)"
[ "$ok" = 1 ]
