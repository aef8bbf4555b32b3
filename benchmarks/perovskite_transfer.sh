#!/bin/bash
# PBE -> RPBE transfer on the Castelli perovskites (the CGAT paper's central experiment, on data we have).
# Run from the repository root, with ../shared beside it; outputs go to runs/ (results are copied to
# benchmarks/results/ by hand). Each command resumes if interrupted.
set -euo pipefail
PEROV=../shared/data/structures/matbench_perovskites_val_subset.json.gz
SIZES=100,200,400,800
COMMON=(--sizes $SIZES --protocol paper --budget-epochs 30 --patience 10 --batch-size 32)

# 1. MEGNet parent (PBE formation energies, MP 2019.4.1): no transfer, head only, full transfer.
atomsets-tf learning-curve $PEROV --model megnet --model megnet-head --model megnet-full "${COMMON[@]}" \
  -o runs/perovskites_megnet_transfer

# 2. CGAT: a parent trained on a PBE surrogate (MEGNet's PBE formation energy per cell of 1500 training-pool
#    structures), then from scratch vs head only vs full transfer on the RPBE targets.
python benchmarks/pbe_surrogate.py --sizes $SIZES -o runs/perovskites_pbe_surrogate.json.gz
atomsets-tf benchmark runs/perovskites_pbe_surrogate.json.gz --model cgat --protocol paper --folds 0 \
  --budget-epochs 25 --patience 8 --batch-size 32 -o runs/cgat_pbe_parent
atomsets-tf learning-curve $PEROV --model cgat --model cgat-head --model cgat-full \
  --features-from runs/cgat_pbe_parent/fold_0/model.keras --sizes 100,200,400 --protocol paper --budget-epochs 30 \
  --patience 10 --batch-size 32 -o runs/perovskites_cgat_transfer
