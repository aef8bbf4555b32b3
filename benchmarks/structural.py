"""Structural AtomSets models on matbench_jdft2d (official 5 folds), features tapped from the MEGNet parent.

    python benchmarks/structural.py                     # AtomSets-V1 (the paper: 40±5 meV/atom)
    python benchmarks/structural.py --models atomsets-v1,mlp-f,atomsets-v0

Same options and output format as ``compositional.py``; writes
``benchmarks/results/structural_jdft2d.json``.
"""

from __future__ import annotations

import sys

from compositional import RESULTS, main

if __name__ == "__main__":
    defaults = ["--tasks", "jdft2d", "--models", "atomsets-v1", "--out", str(RESULTS / "structural_jdft2d.json")]
    sys.exit(main(defaults + sys.argv[1:]))
