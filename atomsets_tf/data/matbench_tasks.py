"""The Matbench v0.1 tasks as plain data (no imports): matbench's metadata, the metric, and the AtomSets paper's units.

:data:`TASKS`: per task, ``matbench_v0.1_dataset_metadata.json``'s n_samples, task_type, input_type, unit and
MAD, the paper's row label in its Table 2, the unit as the paper prints it and as its numbers are, and
``paper_factor`` (paper value = matbench value x paper_factor). The reference figures that use it are in
:mod:`atomsets_tf.evaluation.reference`; the run outputs (plot labels) read the units here.
"""

from __future__ import annotations

from typing import Any

#: The metric of each task type (:func:`atomsets_tf.training.metrics.metric_name` reads it), whether higher is
#: better, and how a table or a plot names it.
METRICS = {"regression": "mae", "classification": "roc_auc"}
HIGHER_IS_BETTER = {"mae": False, "roc_auc": True}
METRIC_LABELS = {"mae": "MAE", "roc_auc": "ROC-AUC"}

#: Atoms per formula unit cell in ``matbench_perovskites`` (cubic ABX3 from Castelli et al.):
#: matbench's target is eV per 5-atom cell, the paper reports meV/atom (Table S1 footnote:
#: "the original data shows formation in eV ... we converted it into eV/atom"). Cross-check:
#: the matbench MAD 0.566 eV/cell x 1000 / 5 = 113 meV/atom is the paper's dummy MAE (Table S4).
PEROVSKITE_ATOMS_PER_CELL = 5

#: Where each Matbench v0.1 task's own file is published (matminer's ``load_dataset`` downloads the same file):
#: a pandas "split" JSON, gzipped, with matbench's ids as its index.
MATBENCH_URL = "https://ml.materialsproject.org/projects/{task}.json.gz"

# Per task: matbench metadata (n_samples, task_type, input_type, matbench_unit, mad - copied from
# matbench_v0.1_dataset_metadata.json), the paper's row label in Table 2, the unit as the paper
# *prints* it in Table 2 (``paper_unit_printed``), the unit its numbers are actually in
# (``paper_unit``), and ``paper_factor``: paper value = matbench value x paper_factor.
TASKS: dict[str, dict[str, Any]] = {
    "matbench_steels": {
        "n_samples": 312, "task_type": "regression", "input_type": "composition",
        "matbench_unit": "MPa", "mad": 229.37426857330706,
        "paper_label": "Yield Strength", "paper_unit_printed": "GPa",
        # The paper's heading says GPa but its numbers (109, 90, AutoMatminer 95, dummy 230) are
        # matbench's MPa values: stored as MPa.
        "paper_unit": "MPa", "paper_factor": 1.0,
    },
    "matbench_jdft2d": {
        "n_samples": 636, "task_type": "regression", "input_type": "structure",
        "matbench_unit": "meV/atom", "mad": 67.20200406491116,
        "paper_label": "E_exfoliation", "paper_unit_printed": "meV/atom",
        "paper_unit": "meV/atom", "paper_factor": 1.0,
    },
    "matbench_phonons": {
        "n_samples": 1265, "task_type": "regression", "input_type": "structure",
        "matbench_unit": "cm^-1", "mad": 323.78696979348734,
        "paper_label": "PhonDOS Peak", "paper_unit_printed": "1/cm",
        "paper_unit": "1/cm", "paper_factor": 1.0,
    },
    "matbench_expt_gap": {
        "n_samples": 4604, "task_type": "regression", "input_type": "composition",
        "matbench_unit": "eV", "mad": 1.1432002429044061,
        "paper_label": "Expt. E_g", "paper_unit_printed": "eV",
        "paper_unit": "eV", "paper_factor": 1.0,
    },
    "matbench_dielectric": {
        "n_samples": 4764, "task_type": "regression", "input_type": "structure",
        "matbench_unit": "unitless", "mad": 0.808534704217072,
        # Table 2 labels the row "epsilon" without a unit; its footnote e (and matbench) say the
        # target is the refractive index n.
        "paper_label": "epsilon (refractive index)", "paper_unit_printed": None,
        "paper_unit": "unitless", "paper_factor": 1.0,
    },
    "matbench_log_kvrh": {
        "n_samples": 10987, "task_type": "regression", "input_type": "structure",
        "matbench_unit": "log10(GPa)", "mad": 0.2896736342937069,
        # Table 2 prints "log(K_VRH) (GPa)", Table S1 "log(GPa)": the values are log10(GPa).
        "paper_label": "log(K_VRH)", "paper_unit_printed": "GPa",
        "paper_unit": "log10(GPa)", "paper_factor": 1.0,
    },
    "matbench_log_gvrh": {
        "n_samples": 10987, "task_type": "regression", "input_type": "structure",
        "matbench_unit": "log10(GPa)", "mad": 0.29313828328604646,
        "paper_label": "log(G_VRH)", "paper_unit_printed": "GPa",
        "paper_unit": "log10(GPa)", "paper_factor": 1.0,
    },
    "matbench_perovskites": {
        "n_samples": 18928, "task_type": "regression", "input_type": "structure",
        "matbench_unit": "eV/unit cell", "mad": 0.5659924184827462,
        "paper_label": "Perovskite E_f", "paper_unit_printed": "meV/atom",
        "paper_unit": "meV/atom", "paper_factor": 1000.0 / PEROVSKITE_ATOMS_PER_CELL,
    },
    "matbench_mp_gap": {
        "n_samples": 106113, "task_type": "regression", "input_type": "structure",
        "matbench_unit": "eV", "mad": 1.3271449960162496,
        "paper_label": "MP E_g", "paper_unit_printed": "eV",
        "paper_unit": "eV", "paper_factor": 1.0,
    },
    "matbench_mp_e_form": {
        "n_samples": 132752, "task_type": "regression", "input_type": "structure",
        "matbench_unit": "eV/atom", "mad": 1.0059220443295362,
        "paper_label": "MP E_f", "paper_unit_printed": "meV/atom",
        "paper_unit": "meV/atom", "paper_factor": 1000.0,
    },
    "matbench_expt_is_metal": {
        "n_samples": 4921, "task_type": "classification", "input_type": "composition",
        "matbench_unit": None, "frac_true": 0.4980694980694981,
        "paper_label": "Expt. Metallicity", "paper_unit_printed": None,
        "paper_unit": None, "paper_factor": 1.0,
    },
    "matbench_glass": {
        # Table 2 gives 5680 samples (as matbench); Table S1 misprints 5690.
        "n_samples": 5680, "task_type": "classification", "input_type": "composition",
        "matbench_unit": None, "frac_true": 0.710387323943662,
        "paper_label": "Glass Forming Ability", "paper_unit_printed": None,
        "paper_unit": None, "paper_factor": 1.0,
    },
    "matbench_mp_is_metal": {
        "n_samples": 106113, "task_type": "classification", "input_type": "structure",
        "matbench_unit": None, "frac_true": 0.43492314796490533,
        "paper_label": "MP Metallicity", "paper_unit_printed": None,
        "paper_unit": None, "paper_factor": 1.0,
    },
}
