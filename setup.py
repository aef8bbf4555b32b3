"""atomsets-tf: AtomSets readouts, pretrained MEGNet/CGAT features and transfer learning in Keras 3."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
about: dict = {}
exec((here / "atomsets_tf" / "_version.py").read_text(), about)

#: The data-only packages and the files of each (no code: importlib finds them by their folder).
DATA_PACKAGES = {
    "atomsets_tf.resources": ["README.md", "*.json.gz"],
    "atomsets_tf.resources.megnet_v0": ["*.json.gz"],
    "atomsets_tf.pretrained": ["presets.json", "literature.json", "*/model.keras", "*/README.md", "*/metrics.json",
                               "megnet/elemental_embedding_1MEGNet_layer.json", "megnet/LICENSE"],
}

setup(
    name="atomsets-tf",
    version=about["__version__"],
    description="AtomSets transfer learning with graph networks (MEGNet, CGAT) in Keras 3 / TensorFlow",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    # The repository's pretrained/ folder (our checkpoints and model cards, and megnet's element table) installs as
    # atomsets_tf.pretrained. The data folders are packages of their own, each with the files it holds, so that the
    # wheel carries every file the package reads (tests/test_wheel.py builds one and checks).
    packages=[*find_packages(include=["atomsets_tf", "atomsets_tf.*"]), *DATA_PACKAGES],
    package_dir={"atomsets_tf.pretrained": "pretrained"},
    package_data=DATA_PACKAGES,
    install_requires=[
        # TensorFlow itself comes from the `cpu` or `gpu` extra (or a TF you
        # installed yourself): its CPU and GPU builds are different distributions.
        "keras>=3.5",
        "numpy>=1.26",
        "scipy>=1.10",  # ranks (metrics); pymatgen needs it too
        "pymatgen>=2024.1",
        "h5py>=3.8",
        "click>=8.1",
        "pandas>=2.0",
        "tqdm>=4.60",  # the progress bars of prepare and tap
    ],
    extras_require={
        "cpu": ["tensorflow-cpu>=2.16"],
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        "tf": ["tensorflow>=2.16"],
        "torch": ["torch>=2.0"],
        "plot": ["matplotlib>=3.7"],  # parity, ROC and training-curve PNGs of fit, retrain and benchmark
        "ase": ["ase>=3.22"],  # ASE Atoms and ASE-readable files (extxyz, ...) as input
        "sklearn": ["scikit-learn>=1.3"],  # the scikit-learn estimators (atomsets_tf.ext.sklearn)
        # the matminer featurizer of MEGNet taps (atomsets_tf.ext.matminer); matbench 0.6 itself installs
        # after it with `pip install --no-deps matbench==0.6` (its own pins do not build on Python 3.11)
        "matminer": ["matminer>=0.9"],
        # megnet 1.3.2 imports only with pymatgen <= 2025.10.7: interoperability and reference benchmarks only.
        "megnet": ["megnet==1.3.2", "pymatgen<=2025.10.7"],
        # The tutorials' notebooks run in the tests (tests/test_tutorials.py).
        "test": ["pytest>=7", "ruff", "matplotlib>=3.7", "nbclient>=0.7", "nbformat>=5.7", "ipykernel>=6",
                 "ase>=3.22", "scikit-learn>=1.3", "matminer>=0.9"],
        "all": ["matplotlib>=3.7", "ase>=3.22", "scikit-learn>=1.3", "matminer>=0.9"],
    },
    entry_points={"console_scripts": ["atomsets-tf=atomsets_tf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Chemistry",
        "Topic :: Scientific/Engineering :: Physics",
    ],
)
