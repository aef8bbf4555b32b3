"""Benchmarks that reproduce the AtomSets and CGAT papers: Matbench protocol, grids, learning curves, transfer.

* :mod:`~atomsets_tf.evaluation.runners`: the models a benchmark can name, trained on one split;
* :mod:`~atomsets_tf.evaluation.protocol`: one model on one task over all folds (``atomsets-tf benchmark``);
* :mod:`~atomsets_tf.evaluation.reference`: the papers' and the Matbench leaderboard's figures;
* :mod:`~atomsets_tf.evaluation.learning_curve`: error against data size, power-law fits (``atomsets-tf learning-curve``);
* :mod:`~atomsets_tf.evaluation.extrapolation`: the top-10 % extrapolation test (``atomsets-tf extrapolation``).
"""
