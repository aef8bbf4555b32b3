"""K ensemble members trained in one Keras model against K separate runs, side by side, on CPU.

    python benchmarks/ensemble_speed.py [--members 5] [--epochs 30]

Each configuration trains AtomSets-V0 on official fold 0 for a fixed number of epochs (no early stop), in a fresh
process (so that one's traces and caches do not speed up the other), and records wall and CPU time. Prints a
table and writes ``benchmarks/results/ensemble_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "ensemble_speed.json"

ONE_RUN = """
import json, os, sys, time
from atomsets_tf.workflows.fit import ModelConfig, TrainingConfig, fit
task, members, epochs, batch, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
t0, c0 = time.perf_counter(), time.process_time()
fit(task, model="atomsets-v0", protocol="matbench", fold=0, progress=False, model_config=ModelConfig(ensemble=members),
    training=TrainingConfig(epochs=epochs, patience=epochs, batch_size=batch, seed=seed))
print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}))
"""


def measure(task: str, members: int, epochs: int, batch: int, seed: int) -> dict:
    out = subprocess.run([sys.executable, "-c", ONE_RUN, task, str(members), str(epochs), str(batch), str(seed)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--tasks", default="matbench_steels:16,matbench_expt_gap:128")
    args = parser.parse_args()
    rows = []
    for spec in args.tasks.split(","):
        task, batch = spec.split(":")
        batched = measure(task, args.members, args.epochs, int(batch), 0)
        separate = [measure(task, 1, args.epochs, int(batch), k) for k in range(args.members)]
        row = {"task": task, "members": args.members, "epochs": args.epochs, "batch_size": int(batch),
               "batched_wall_s": batched["wall_s"], "batched_cpu_s": batched["cpu_s"],
               "separate_wall_s": sum(r["wall_s"] for r in separate),
               "separate_cpu_s": sum(r["cpu_s"] for r in separate)}
        row["speedup_wall"] = row["separate_wall_s"] / row["batched_wall_s"]
        row["speedup_cpu"] = row["separate_cpu_s"] / row["batched_cpu_s"]
        rows.append(row)
        print(f"{task:<20} K={args.members} {args.epochs} epochs, batch {batch}: one model {row['batched_wall_s']:.1f} s "
              f"(cpu {row['batched_cpu_s']:.1f}), {args.members} runs {row['separate_wall_s']:.1f} s "
              f"(cpu {row['separate_cpu_s']:.1f}): {row['speedup_wall']:.2f}x wall, {row['speedup_cpu']:.2f}x cpu",
              flush=True)
    RESULT.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
