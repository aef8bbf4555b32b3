#!/bin/bash
# Training-epoch timings of AtomSets-V1, MEGNet and CGAT on every visible GPU: `--strategy mirrored`, mixed
# precision, a synthetic set from benchmarks/synthetic.py (strained / substituted perovskites). Each model trains
# 2 epochs: epoch 1 includes tracing, epoch 2 is the steady epoch (time between the two progress lines).
# Prints epoch times and throughput, writes benchmarks/results/gpu_scale.json. About 5-8 min on one H200.
#
#   bash benchmarks/gpu_scale.sh                  # N=10000, batch 256, mixed_bfloat16, all visible GPUs
#   N=20000 BATCH=512 PRECISION=mixed_float16 bash benchmarks/gpu_scale.sh
#   bash benchmarks/gpu_scale.sh --cpu-smoke      # the same commands on 2 logical CPUs, N=96 (< 2 min idle)
#   bash benchmarks/gpu_scale.sh --dry-run        # print the commands, run nothing
#   bash benchmarks/gpu_scale.sh --no-install     # skip the pip step
# A model that fails under mixed precision is run again in float32, and the error is recorded.
# Run from anywhere; needs ../shared beside the repository (or $ATOMSETS_TF_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=gpu DRY=0 INSTALL=1
for arg in "$@"; do
  case $arg in
    --cpu-smoke) MODE=cpu ;;
    --dry-run) DRY=1 ;;
    --no-install) INSTALL=0 ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) echo "Error: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$MODE" = cpu ]; then
  N=${N:-96} BATCH=${BATCH:-16} PRECISION=${PRECISION:-mixed_bfloat16} EPOCHS=2 INSTALL=0
  REPLICAS=(--replicas 2) OUT_DIR=${OUT_DIR:-runs/gpu_scale_smoke}
  JSON=${JSON:-$OUT_DIR/gpu_scale.json}
  export CUDA_VISIBLE_DEVICES=""
else
  N=${N:-10000} BATCH=${BATCH:-256} PRECISION=${PRECISION:-mixed_bfloat16} EPOCHS=2
  REPLICAS=() OUT_DIR=${OUT_DIR:-runs/gpu_scale}
  JSON=${JSON:-benchmarks/results/gpu_scale.json}
fi
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2} PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
DATA=$OUT_DIR/syn-perovskites-$N.json.gz
COMMON=(--epochs "$EPOCHS" --batch-size "$BATCH" --strategy mirrored "${REPLICAS[@]}" --patience 10)

# 1. The package, with a GPU TensorFlow (setup.py's `gpu` extra is tensorflow[and-cuda]).
if [ "$INSTALL" = 1 ] && [ "$DRY" = 0 ]; then
  if ! python -c "import tensorflow as tf, sys; sys.exit(not tf.config.list_physical_devices('GPU'))" 2>/dev/null; then
    pip install -q -e ".[gpu]" || pip install -q -e . "tensorflow[and-cuda]"
  fi
  python -c "import atomsets_tf" 2>/dev/null || pip install -q -e . --no-deps
fi

# 2. The synthetic set (made once per N).
if [ "$DRY" = 1 ]; then
  echo "python benchmarks/synthetic.py perovskites $N -o $DATA"
elif [ ! -f "$DATA" ]; then
  python benchmarks/synthetic.py perovskites "$N" -o "$DATA"
fi

# 3. One timed training run per model; the driver stamps each progress line and writes the JSON.
python - "$DRY" "$JSON" "$DATA" "$N" "$PRECISION" "$MODE" "$OUT_DIR" "${COMMON[@]}" <<'PY'
import json, os, re, subprocess, sys, time
from pathlib import Path

dry, out_json, data, n, precision, mode, out_dir, *common = sys.argv[1:]
cli = [sys.executable, "-m", "atomsets_tf.cli"]  # = atomsets-tf, also without the console script
models = {
    "atomsets-v1": cli + ["fit", data, "--model", "atomsets-v1"],
    "megnet": cli + ["retrain", "megnet-mp-2019.4.1-formation_energy", data, "--mode", "full"],
    "cgat": cli + ["retrain", "cgat-perovskites", data, "--mode", "full"],
}


def run(name, cmd):
    """Run cmd, stamping its lines; return (returncode, seconds, epoch end times, last lines)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    epochs, tail = [], []
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-40:]
        if re.match(r"epoch \d+/\d+", line):
            epochs.append(time.perf_counter() - start)
            print(f"  [{name} {epochs[-1]:7.1f} s] {line}", flush=True)
        elif line.startswith("Error:"):
            print(f"  [{name}] {line}", flush=True)
    return proc.wait(), time.perf_counter() - start, epochs, tail


def why(tail, rc):
    """The error lines of a failed run's output (ANSI colours removed), else its exit status."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", t).strip() for t in tail]
    found = [t for t in lines if re.search(r"Error|does not match|not supported", t) and not t.startswith("File ")]
    return " | ".join(found[-2:]) or f"exit {rc}"


def one_model(name, base):
    folder = Path(out_dir) / name
    cmd = base + common + ["--mixed-precision", precision, "-o", str(folder), "--restart"]
    if dry == "1":
        print(" ".join(cmd))
        return None
    rc, seconds, epochs, tail = run(name, cmd)
    record = {"command": " ".join(cmd), "mixed_precision": precision}
    if rc != 0:
        record["mixed_precision_error"] = why(tail, rc)
        print(f"  [{name}] failed under {precision}; again in float32", flush=True)
        cmd = base + common + ["-o", str(folder), "--restart"]
        rc, seconds, epochs, tail = run(name, cmd)
        record.update(command=" ".join(cmd), mixed_precision=None)
    record.update(returncode=rc, command_s=seconds, epoch_end_s=epochs)
    if rc != 0:
        record["error"] = why(tail, rc)
        return record
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("n_train", "n_val", "strategy", "replicas", "wall_time_s", "epochs_run"):
        record[key] = metrics.get(key)
    if len(epochs) >= 2:
        record["steady_epoch_s"] = epochs[1] - epochs[0]
        record["train_structs_per_s"] = metrics["n_train"] / record["steady_epoch_s"]
    return record


report = {"mode": mode, "n_structures": int(n), "data": data, "precision": precision, "options": common,
          "gpus": [], "models": {}}
if dry != "1":
    import tensorflow as tf

    report["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    report["tensorflow"] = tf.__version__
    print(f"{len(report['gpus'])} GPU(s); N={n}; {' '.join(common)} --mixed-precision {precision}", flush=True)
for name, base in models.items():
    report["models"][name] = one_model(name, base)
if dry == "1":
    sys.exit(0)
print(f"\n{'model':12s} {'precision':15s} {'replicas':>8s} {'to epoch 1':>10s} {'epoch 2 s':>10s} {'train/s':>9s}")
for name, r in report["models"].items():
    if "error" in r:
        print(f"{name:12s} failed: {r['error']}")
        continue
    e1 = r["epoch_end_s"][0] if r["epoch_end_s"] else float("nan")
    print(f"{name:12s} {str(r['mixed_precision']):15s} {r['replicas']:8d} {e1:10.1f} "
          f"{r.get('steady_epoch_s', float('nan')):10.2f} {r.get('train_structs_per_s', float('nan')):9.0f}")
Path(out_json).parent.mkdir(parents=True, exist_ok=True)
tmp = Path(out_json).with_name(f".tmp-{os.getpid()}-{Path(out_json).name}")
tmp.write_text(json.dumps(report, indent=1) + "\n")
os.replace(tmp, out_json)
print(f"wrote {out_json}")
sys.exit(0 if all("error" not in r for r in report["models"].values()) else 1)
PY
