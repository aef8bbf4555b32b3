#!/usr/bin/env bash
# The wheel is the product: build it from the tracked files, install it in a fresh venv (with the lock), and run it
# from an empty folder, without $ATOMSETS_TF_SHARED (the only way to the development folder): `atomsets-tf models`,
# `predict` with a shipped preset, and README command 1's fit. Called by .ci/run before the tests; fails the run if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/atomsets-tf-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$SECONDS

# Build from a copy of the tracked files (a stale build/ of the checkout cannot leak into the wheel).
mkdir -p "$work/src" && git ls-files -z | xargs -0 -I{} cp --parents "{}" "$work/src/"
python -m pip wheel -q --no-deps -w "$work/dist" "$work/src"
python -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$(ls "$work"/dist/atomsets_tf-*.whl)[cpu,plot]" -c constraints.txt
echo "wheel step: built and installed in $((SECONDS - start)) s"

# From an empty folder, with nothing of the checkout or ../shared in reach.
mkdir "$work/empty" && cd "$work/empty"
export ATOMSETS_TF_CACHE="$work/cache" TF_CPP_MIN_LOG_LEVEL=2
unset ATOMSETS_TF_SHARED ATOMSETS_TF_MODELS ATOMSETS_TF_DATA PYTHONPATH
bin="$work/venv/bin"
"$bin/python" -c "import atomsets_tf, sys; p = atomsets_tf.__file__; print('atomsets_tf from', p); \
sys.exit(0 if p.startswith('$work/venv/') else 'not the wheel: ' + p)"
"$bin/atomsets-tf" models > models.txt && grep -q "atomsets-v0-steels" models.txt
printf 'id,formula\nss-1,Fe0.7Cr0.18Ni0.1Mo0.02\nss-2,Fe0.8Ni0.18Co0.02\n' > steels.csv
"$bin/atomsets-tf" predict atomsets-v0-steels steels.csv -o predictions.csv
test "$(wc -l < predictions.csv)" -eq 3
# README command 1's fit (its first command, after `pip install ... &&`), taken from the README itself
fit=$(grep -m1 '^pip install -e ".\[cpu,plot\]" && atomsets-tf fit' "$root/README.md" | sed 's/^[^&]*&& //')
eval "$bin/$fit --quiet"
test -f runs/steels/model.keras && test -f runs/steels/metrics.json
echo "wheel step: passed in $((SECONDS - start)) s (models, predict with a shipped preset, README command 1's fit)"
