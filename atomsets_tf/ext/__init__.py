"""Bridges to the libraries materials scientists already compose (each an optional extra).

* :mod:`atomsets_tf.ext.matminer`: a matminer featurizer of MEGNet taps (``pip install "atomsets-tf[matminer]"``);
* :mod:`atomsets_tf.ext.sklearn`: scikit-learn estimators for AtomSets (``pip install "atomsets-tf[sklearn]"``).

The core package imports none of them; importing a bridge without its extra raises an
:class:`~atomsets_tf.errors.AtomSetsError` that names the extra to install.
"""
