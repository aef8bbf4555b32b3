"""Published reference numbers, as plain data, with their sources.

* :data:`PAPER_TABLE2`, :data:`PAPER_TABLE_S3`, :data:`PAPER_TABLE_S4`: C. Chen and S. P. Ong,
  "AtomSets as a hierarchical transfer learning framework for small and large materials
  datasets", npj Comput. Mater. 7, 173 (2021); the tables as transcribed in
  ``../shared/papers/atomsets_chen_ong_2021.md`` (Table 2 around line 109, Tables S3/S4
  in the supplement at its end). Each is ``task -> model -> (mean, std)`` in the *paper's*
  units (:data:`TASKS` ``paper_unit``); ``std`` is ``None`` where the paper prints one number.
  A "-" in the paper (model not applicable) is simply absent.
* :data:`TASKS`: per Matbench v0.1 task, the matbench metadata
  (``matbench_v0.1_dataset_metadata.json``), the metric, and how the paper's units relate to
  matbench's (:func:`to_paper_units`).
* :data:`CGAT_PAPER`: N. Hoffmann, J. Schmidt, S. Botti and M. A. L. Marques, "Transfer learning
  on large datasets for the accurate prediction of material properties", Digital Discovery 2,
  1368 (2023), DOI 10.1039/d3dd00030c (``../shared/papers/hoffmann_2023_transfer_learning_cgat.md``).
* :data:`MATBENCH_LEADERBOARD`: the top entries of the official Matbench v0.1 leaderboard
  (materialsproject/matbench repository, ``docs_src``), in matbench's units.

:func:`reference_row` is what ``atomsets-tf benchmark`` puts next to a run in ``summary.json``.
"""

from __future__ import annotations

from typing import Any

from atomsets_tf.data.matbench_tasks import (  # noqa: F401  (METRICS, TASKS re-exported)
    METRIC_LABELS,
    METRICS,
    PEROVSKITE_ATOMS_PER_CELL,
    TASKS,
)

for _spec in TASKS.values():
    _spec["metric"] = METRICS[_spec["task_type"]]
del _spec

# AtomSets paper, Table 2 ("Performance of AtomSets models relative to state-of-the-art models"):
# mean ± std over five random 80/10/10 splits; MAE for regression, ROC-AUC for classification.
# "megnet" and "automatminer" are the paper's last two columns, quoted from Dunn et al. (matbench
# paper, its ref. 6): single numbers, std None.
PAPER_TABLE2: dict[str, dict[str, tuple[float, float | None]]] = {
    "matbench_steels": {  # MPa, although the heading prints GPa (see TASKS)
        "atomsets": (109, 14), "atomsets-v0": (90, 25), "automatminer": (95, None),
    },
    "matbench_jdft2d": {
        "atomsets": (52, 7), "atomsets-v0": (51, 6), "atomsets-v1": (40, 5), "atomsets-v2": (48, 9),
        "atomsets-v3": (54, 7), "mlp-f": (55, 2), "megnet": (56, None), "automatminer": (39, None),
    },
    "matbench_phonons": {
        "atomsets": (63, 6), "atomsets-v0": (52, 7), "atomsets-v1": (54, 9), "atomsets-v2": (106, 4),
        "atomsets-v3": (126, 75), "mlp-f": (154, 8), "megnet": (37, None), "automatminer": (51, None),
    },
    "matbench_expt_gap": {
        "atomsets": (0.45, 0.02), "atomsets-v0": (0.43, 0.03), "automatminer": (0.42, None),
    },
    "matbench_dielectric": {
        "atomsets": (0.51, 0.05), "atomsets-v0": (0.47, 0.05), "atomsets-v1": (0.46, 0.03),
        "atomsets-v2": (0.52, 0.08), "atomsets-v3": (0.56, 0.06), "mlp-f": (0.59, 0.05),
        "megnet": (0.48, None), "automatminer": (0.30, None),
    },
    "matbench_log_kvrh": {
        "atomsets": (0.09, 0.00), "atomsets-v0": (0.09, 0.00), "atomsets-v1": (0.07, 0.00),
        "atomsets-v2": (0.09, 0.00), "atomsets-v3": (0.15, 0.07), "mlp-f": (0.10, 0.00),
        "megnet": (0.07, None), "automatminer": (0.07, None),
    },
    "matbench_log_gvrh": {
        "atomsets": (0.11, 0.00), "atomsets-v0": (0.11, 0.00), "atomsets-v1": (0.09, 0.00),
        "atomsets-v2": (0.10, 0.00), "atomsets-v3": (0.14, 0.08), "mlp-f": (0.11, 0.00),
        "megnet": (0.09, None), "automatminer": (0.09, None),
    },
    "matbench_perovskites": {  # meV/atom
        "atomsets": (83, 1), "atomsets-v0": (83, 1), "atomsets-v1": (12, 0), "atomsets-v2": (24, 0),
        "atomsets-v3": (113, 1), "mlp-f": (30, 0), "megnet": (8, None), "automatminer": (39, None),
    },
    "matbench_mp_gap": {
        "atomsets": (0.26, 0.00), "atomsets-v0": (0.27, 0.00), "atomsets-v1": (0.25, 0.01),
        "atomsets-v2": (0.30, 0.01), "atomsets-v3": (0.30, 0.01), "mlp-f": (0.37, 0.00),
        "megnet": (0.24, None), "automatminer": (0.28, None),
    },
    "matbench_mp_e_form": {  # meV/atom
        "atomsets": (107, 2), "atomsets-v0": (108, 1), "atomsets-v1": (44, 1), "atomsets-v2": (66, 0),
        "atomsets-v3": (73, 1), "mlp-f": (17, 0), "megnet": (33, None), "automatminer": (173, None),
    },
    "matbench_expt_is_metal": {
        "atomsets": (0.94, 0.02), "atomsets-v0": (0.94, 0.01), "automatminer": (0.92, None),
    },
    "matbench_glass": {
        "atomsets": (0.92, 0.02), "atomsets-v0": (0.92, 0.01), "automatminer": (0.86, None),
    },
    "matbench_mp_is_metal": {
        "atomsets": (0.95, 0.00), "atomsets-v0": (0.95, 0.00), "atomsets-v1": (0.96, 0.00),
        "atomsets-v2": (0.95, 0.00), "atomsets-v3": (0.96, 0.00), "mlp-f": (0.96, 0.00),
        "megnet": (0.98, None), "automatminer": (0.91, None),
    },
}

# AtomSets paper, Table S3 ("AtomSets model performance with best parameters"): the V0 / V1
# models after the per-dataset grid search of Table S2 ("+" = best parameters).
PAPER_TABLE_S3: dict[str, dict[str, tuple[float, float | None]]] = {
    "matbench_steels": {"atomsets-v0+": (90, 25)},  # MPa (heading prints GPa)
    "matbench_jdft2d": {"atomsets-v0+": (42, 8), "atomsets-v1+": (40, 5)},
    "matbench_phonons": {"atomsets-v0+": (48, 5), "atomsets-v1+": (54, 9)},
    "matbench_expt_gap": {"atomsets-v0+": (0.42, 0.03)},
    "matbench_dielectric": {"atomsets-v0+": (0.46, 0.05), "atomsets-v1+": (0.44, 0.04)},
    "matbench_expt_is_metal": {"atomsets-v0+": (0.95, 0.01)},
    "matbench_glass": {"atomsets-v0+": (0.92, 0.01)},
    "matbench_log_kvrh": {"atomsets-v0+": (0.08, 0.00), "atomsets-v1+": (0.07, 0.00)},
    "matbench_log_gvrh": {"atomsets-v0+": (0.11, 0.00), "atomsets-v1+": (0.08, 0.00)},
    "matbench_perovskites": {"atomsets-v0+": (83, 1), "atomsets-v1+": (10, 0)},
    "matbench_mp_gap": {"atomsets-v0+": (0.26, 0.00), "atomsets-v1+": (0.23, 0.01)},
    "matbench_mp_is_metal": {"atomsets-v0+": (0.95, 0.00), "atomsets-v1+": (0.96, 0.00)},
    "matbench_mp_e_form": {"atomsets-v0+": (106, 1), "atomsets-v1+": (41, 1)},
}

# AtomSets paper, Table S4 ("Various MLP model performances compared to the dummy models"). The
# dummy predicts the training mean (regression) or the majority label (classification).
PAPER_TABLE_S4: dict[str, dict[str, tuple[float, float | None]]] = {
    "matbench_steels": {"mlp-v0-stats": (107, 28), "dummy": (230, None)},  # MPa (heading prints GPa)
    "matbench_jdft2d": {
        "mlp-v0-stats": (61, 8), "mlp-u1": (47, 5), "mlp-u2": (57, 6), "mlp-u3": (62, 10),
        "mlp-v_r": (63, 9), "dummy": (67, None),
    },
    "matbench_phonons": {
        "mlp-v0-stats": (111, 10), "mlp-u1": (120, 13), "mlp-u2": (224, 13), "mlp-u3": (233, 34),
        "mlp-v_r": (188, 15), "dummy": (324, None),
    },
    "matbench_expt_gap": {"mlp-v0-stats": (0.61, 0.03), "dummy": (1.14, None)},
    "matbench_dielectric": {
        "mlp-v0-stats": (0.59, 0.03), "mlp-u1": (0.56, 0.03), "mlp-u2": (0.65, 0.05),
        "mlp-u3": (0.67, 0.06), "mlp-v_r": (0.55, 0.03), "dummy": (0.81, None),
    },
    "matbench_expt_is_metal": {"mlp-v0-stats": (0.95, 0.01), "dummy": (0.50, None)},
    "matbench_glass": {"mlp-v0-stats": (0.92, 0.01), "dummy": (0.50, None)},
    "matbench_log_kvrh": {
        "mlp-v0-stats": (0.11, 0.00), "mlp-u1": (0.10, 0.00), "mlp-u2": (0.15, 0.00),
        "mlp-u3": (0.18, 0.01), "mlp-v_r": (0.12, 0.00), "dummy": (0.29, None),
    },
    "matbench_log_gvrh": {
        "mlp-v0-stats": (0.13, 0.01), "mlp-u1": (0.12, 0.00), "mlp-u2": (0.16, 0.01),
        "mlp-u3": (0.18, 0.01), "mlp-v_r": (0.13, 0.00), "dummy": (0.29, None),
    },
    "matbench_perovskites": {  # meV/atom
        "mlp-v0-stats": (87, 2), "mlp-u1": (40, 1), "mlp-u2": (51, 1), "mlp-u3": (43, 0),
        "mlp-v_r": (39, 1), "dummy": (113, None),
    },
    "matbench_mp_gap": {
        "mlp-v0-stats": (0.46, 0.01), "mlp-u1": (0.57, 0.01), "mlp-u2": (0.60, 0.01),
        "mlp-u3": (0.57, 0.01), "mlp-v_r": (0.44, 0.00), "dummy": (1.33, None),
    },
    "matbench_mp_is_metal": {
        "mlp-v0-stats": (0.94, 0.00), "mlp-u1": (0.94, 0.00), "mlp-u2": (0.93, 0.00),
        "mlp-u3": (0.93, 0.00), "mlp-v_r": (0.95, 0.00), "dummy": (0.50, None),
    },
    "matbench_mp_e_form": {  # meV/atom
        "mlp-v0-stats": (157, 2), "mlp-u1": (125, 1), "mlp-u2": (180, 1), "mlp-u3": (138, 2),
        "mlp-v_r": (79, 1), "dummy": (1010, None),
    },
}

#: Lookup order of :func:`reference_row`: (table name, table).
PAPER_TABLES: tuple[tuple[str, dict[str, dict[str, tuple[float, float | None]]]], ...] = (
    ("table2", PAPER_TABLE2),
    ("tableS3", PAPER_TABLE_S3),
    ("tableS4", PAPER_TABLE_S4),
)

# CGAT transfer-learning paper (Hoffmann et al. 2023). All MAEs are on the fixed test set (80/10/10
# split, drawn once for PBEsol/SCAN). "full_transfer": all weights retrained from the PBE model;
# "regression_head": only the residual output network retrained; "no_transfer": trained from scratch.
CGAT_PAPER: dict[str, Any] = {
    "reference": "N. Hoffmann, J. Schmidt, S. Botti, M. A. L. Marques, Digital Discovery 2, 1368 (2023), "
                 "DOI 10.1039/d3dd00030c",
    # Table 1 ("Intra-property transfer learning"): test MAE, and in parentheses the percent
    # improvement over no transfer (printed as a whole number). "pbe" is the model trained on the
    # 1.8 M PBE set alone. PBEsol band gaps and SCAN volumes were not trained (empty cells).
    "table1": {
        "e_hull": {
            "unit": "meV/atom", "pbe": 23,
            "pbesol": {"no_transfer": 26, "regression_head": {"mae": 22, "improvement_pct": 15},
                       "full_transfer": {"mae": 19, "improvement_pct": 27}},
            "scan": {"no_transfer": 31, "regression_head": {"mae": 26, "improvement_pct": 16},
                     "full_transfer": {"mae": 22, "improvement_pct": 29}},
        },
        "e_form": {
            "unit": "meV/atom", "pbe": 18,
            "pbesol": {"no_transfer": 20, "regression_head": {"mae": 18, "improvement_pct": 10},
                       "full_transfer": {"mae": 13, "improvement_pct": 35}},
            "scan": {"no_transfer": 24, "regression_head": {"mae": 22, "improvement_pct": 8},
                     "full_transfer": {"mae": 16, "improvement_pct": 33}},
        },
        "volume": {
            "unit": "A^3/atom", "pbe": 0.24,
            "pbesol": {"no_transfer": 0.21, "regression_head": {"mae": 0.18, "improvement_pct": 14},
                       "full_transfer": {"mae": 0.16, "improvement_pct": 23}},
        },
        "band_gap": {
            "unit": "eV", "pbe": 0.020,
            # The transcription prints the regression-head MAE as "0.93 (-19%)"; with -19 % against
            # 0.078 it is 0.093 (0.078 x 1.19), stored as such. Negative = worse than no transfer.
            "scan": {"no_transfer": 0.078, "regression_head": {"mae": 0.093, "improvement_pct": -19},
                     "full_transfer": {"mae": 0.068, "improvement_pct": 13}},
        },
    },
    # Text, same section: no-transfer models have 9 % (PBEsol) and 23 % (SCAN) higher E_hull MAE
    # than the PBE model (23 meV/atom); full transfer reached its result after ~70 epochs.
    "no_transfer_vs_pbe_pct": {"pbesol": 9, "scan": 23},
    # SCAN band gaps restricted to gaps > 0.1 eV: full transfer improves the MAE by 9 %.
    "band_gap_above_0p1ev_full_transfer_improvement_pct": 9,
    # Inter-property: SCAN E_form from a PBE E_hull model, full retraining: 18 % error reduction
    # (Fig. 7); intra-property transfer gives a 56-59 % larger improvement than inter-property
    # over the training-set sizes of Fig. 8. Volumes <-> E_form transfer did not beat no transfer.
    "inter_property_full_transfer_improvement_pct": 18,
    "intra_vs_inter_extra_improvement_pct": (56, 59),
    # Learning curves (Figs. 3, 4, 8): MAE vs training-set size is linear on a log-log scale, with a
    # similar slope with and without transfer. The fitted slopes and intercepts appear only in the
    # Fig. 3 insets, not in the text: not recorded here.
    "learning_curve_slopes": None,
    "chemical_accuracy_meV_per_atom": 43,
    "chemical_accuracy_reached_at_n_train": 11_000,  # with transfer, E_hull and E_form (Fig. 4)
    # Log-log extrapolation: training-set size a no-transfer model needs to match the transfer
    # model's MAE ...
    "no_transfer_n_train_to_match_transfer": {
        ("e_hull", "scan"): 1_600_000, ("e_hull", "pbesol"): 1_700_000,
        ("e_form", "scan"): 1_500_000, ("e_form", "pbesol"): 1_600_000,
    },
    # ... and to match the best transfer-learned network.
    "no_transfer_n_train_to_match_best_transfer": {
        ("e_hull", "scan"): 613_000, ("e_hull", "pbesol"): 637_000,
        ("e_form", "scan"): 513_000, ("e_form", "pbesol"): 568_000,
    },
    "scan_cost_over_pbe": 5,  # assumption behind Fig. 5
    "datasets": {"pbe": 1_800_000, "pbesol_scan": 225_000, "split": (0.8, 0.1, 0.1)},
    # Methods, section IV.B: CGAT hyperparameters.
    "hyperparameters": {
        "optimizer": "AdamW", "learning_rate": 1.25e-4, "weight_decay": 1e-6, "momentum": 0.9,
        "batch_size": 512, "epochs": 390, "loss": "L1", "atom_fea_len": 128, "nbr_embedding_size": 512,
        "msg_heads": 6, "max_nbr": 24, "message_passing_steps": 5, "roost_message_passing_steps": 3,
        "embedding": "matscholar", "lr_schedule": "cyclical (triangular, 0.1x to 1x)",
        "lr_period": 130, "lr_period_transfer": 70, "lr_period_pretraining_fig3": 90,
        "hypernetwork": {"hidden_layers": 3, "size": 128, "activation": "tanh"},
        "fcnn": {"hidden_layers": 1, "size": 512, "activation": "leaky_relu"},
    },
}

# Official Matbench v0.1 leaderboard, read from the materialsproject/matbench repository:
# * "best": the first row of the per-task leaderboard
#   ``docs_src/Leaderboards Per-Task/matbench_v0.1_<task>.md`` (general-purpose *and*
#   task-specific algorithms) at commit ``commit``; mean and std over the 5 matbench folds.
# * "best_general_purpose": the task's row of the "Leaderboard-Property: General Purpose
#   Algorithms on matbench_v0.1" table in ``docs_src/index.md`` (the stored version that reports
#   "167" task submissions and "25" algorithms; the code index did not give its commit). Its
#   numbers match the per-task pages.
# Numbers are MAE (regression, matbench units) or mean ROC-AUC (classification). The commit date is
# not given by the source; the per-task pages at these commits embed plotly.js v2.27.0
# ("Copyright 2012-2023"), so the snapshot is from late 2023 or later.
MATBENCH_REPO = "materialsproject/matbench"
_BB3 = "bb3eebf475ceac45e257f36c05cec7773b5ebb43"
_936 = "936176db18ca4cd7b38cbd957c017a5bac770c6b"
MATBENCH_LEADERBOARD: dict[str, dict[str, Any]] = {
    "matbench_steels": {
        "best": {"algorithm": "TPOT-Mat", "mean": 79.9468, "std": 13.5883},
        "best_general_purpose": {"algorithm": "MODNet (v0.1.12)", "mean": 87.7627}, "commit": _BB3,
    },
    "matbench_jdft2d": {
        "best": {"algorithm": "MODNet (v0.1.12)", "mean": 33.1918, "std": 7.3428},
        "best_general_purpose": {"algorithm": "MODNet (v0.1.12)", "mean": 33.1918}, "commit": _936,
    },
    "matbench_phonons": {
        "best": {"algorithm": "MegNet (kgcnn v2.1.0)", "mean": 28.7606, "std": 2.5767},
        "best_general_purpose": {"algorithm": "MegNet (kgcnn v2.1.0)", "mean": 28.7606}, "commit": _BB3,
    },
    "matbench_expt_gap": {
        "best": {"algorithm": "Darwin", "mean": 0.2865, "std": 0.0083},
        "best_general_purpose": {"algorithm": "MODNet (v0.1.12)", "mean": 0.3327}, "commit": _BB3,
    },
    "matbench_dielectric": {
        "best": {"algorithm": "MODNet (v0.1.12)", "mean": 0.2711, "std": 0.0714},
        "best_general_purpose": {"algorithm": "MODNet (v0.1.12)", "mean": 0.2711}, "commit": _BB3,
    },
    "matbench_expt_is_metal": {
        "best": {"algorithm": "Darwin", "mean": 0.9598, "std": 0.0041},
        "best_general_purpose": {"algorithm": "AMMExpress v2020", "mean": 0.9209}, "commit": _BB3,
    },
    "matbench_glass": {
        "best": {"algorithm": "MODNet (v0.1.12)", "mean": 0.9603, "std": 0.0075},
        "best_general_purpose": {"algorithm": "MODNet (v0.1.12)", "mean": 0.9603}, "commit": _BB3,
    },
    "matbench_log_gvrh": {
        "best": {"algorithm": "coNGN", "mean": 0.0670, "std": 0.0006},
        "best_general_purpose": {"algorithm": "coNGN", "mean": 0.0670}, "commit": _936,
    },
    "matbench_log_kvrh": {
        "best": {"algorithm": "coNGN", "mean": 0.0491, "std": 0.0026},
        "best_general_purpose": {"algorithm": "coNGN", "mean": 0.0491}, "commit": _BB3,
    },
    "matbench_perovskites": {
        "best": {"algorithm": "coGN", "mean": 0.0269, "std": 0.0008},
        "best_general_purpose": {"algorithm": "coGN", "mean": 0.0269}, "commit": _BB3,
    },
    "matbench_mp_gap": {
        "best": {"algorithm": "coGN", "mean": 0.1559, "std": 0.0017},
        "best_general_purpose": {"algorithm": "coGN", "mean": 0.1559}, "commit": _BB3,
    },
    "matbench_mp_is_metal": {
        "best": {"algorithm": "CGCNN v2019", "mean": 0.9520, "std": 0.0074},
        "best_general_purpose": {"algorithm": "CGCNN v2019", "mean": 0.9520}, "commit": _BB3,
    },
    "matbench_mp_e_form": {
        "best": {"algorithm": "coGN", "mean": 0.0170, "std": 0.0003},
        "best_general_purpose": {"algorithm": "coGN", "mean": 0.0170}, "commit": _BB3,
    },
}
del _BB3, _936


def leaderboard_source(task: str) -> str:
    """The GitHub address of the per-task leaderboard page a :data:`MATBENCH_LEADERBOARD` entry was read from."""
    commit = MATBENCH_LEADERBOARD[task]["commit"]
    return (f"https://github.com/{MATBENCH_REPO}/blob/{commit}/docs_src/"
            f"Leaderboards%20Per-Task/matbench_v0.1_{task}.md")


def to_paper_units(task: str, value: float) -> float:
    """A metric (or its std) of ``task`` in matbench's data units, expressed in the AtomSets paper's units.

    E.g. ``matbench_mp_e_form`` eV/atom -> meV/atom (x1000), ``matbench_perovskites`` eV per 5-atom
    cell -> meV/atom (x200); unchanged elsewhere (ROC-AUC included). Raises ``KeyError`` for a task
    not in :data:`TASKS`.
    """
    return value * TASKS[task]["paper_factor"]


def from_paper_units(task: str, value: float) -> float:
    """The inverse of :func:`to_paper_units`: a paper number in matbench's data units."""
    return value / TASKS[task]["paper_factor"]


def reference_row(task: str, model: str) -> dict | None:
    """The AtomSets paper's number for ``model`` on ``task``, in the paper's units, or ``None``.

    Looks in Table 2, then Table S3, then Table S4. Returns
    ``{"paper_mean", "paper_std", "paper_table"}`` (``paper_std`` ``None`` for single numbers).
    """
    for name, table in PAPER_TABLES:
        entry = table.get(task, {}).get(model)
        if entry is not None:
            mean, std = entry
            return {"paper_mean": mean, "paper_std": std, "paper_table": name}
    return None


def paper_comparison(metrics: dict) -> str | None:
    """One line that sets a run's test metric beside the AtomSets paper's figure for the same model and task.

    ``metrics`` is a run's ``metrics.json`` (``data``, ``model``, ``task_type``, ``test_<metric>``). Returns
    e.g. ``"test MAE 100.8 MPa; the AtomSets paper: 90 ± 25 MPa (Table 2, ...)"``, or None for data that is
    not a Matbench task the paper reports for this model.
    """
    task, model = str(metrics.get("data", "")), str(metrics.get("model", ""))
    metric = METRICS.get(str(metrics.get("task_type")))
    reference = reference_row(task, model) if task in TASKS else None
    if reference is None or metric is None or f"test_{metric}" not in metrics:
        return None
    unit = "" if metric == METRICS["classification"] else f" {TASKS[task]['paper_unit']}"
    ours = to_paper_units(task, float(metrics[f"test_{metric}"]))
    paper = f"{reference['paper_mean']:.3g}"
    if reference["paper_std"] is not None:
        paper += f" ± {reference['paper_std']:.2g}"
    name = METRIC_LABELS[metric]
    table = reference["paper_table"].replace("table", "Table ")
    split = f"{metrics['protocol']} fold {metrics['fold']}" if "fold" in metrics else "one split"
    return (f"test {name} {ours:.4g}{unit} ({split}); the AtomSets paper, {model}: {paper}{unit} "
            f"({table}, 5 random splits)")
