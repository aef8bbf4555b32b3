"""Keras 3 readout layers of the AtomSets paper.

* :class:`WeightedMeanReadout`: the weighted mean of eq. 4.
* :class:`WeightedSet2Set`: the weighted set2set of eqs. 5-9, on :class:`Set2SetCore`, the set2set loop
  that megnet's ``MEGNetSet2Set`` shares.
* :class:`TargetScaler`: undoes target standardisation inside a model (intensive or extensive).
* :class:`ZeroInflatedOutput`: a probability of a positive target times a positive magnitude (band gaps).
* :class:`EnsembleMoments`: the mean and (rescaled) spread of an ensemble's member predictions.
"""

from atomsets_tf.layers.activations import hard_sigmoid_keras2, softplus2
from atomsets_tf.layers.ensemble_moments import EnsembleMoments
from atomsets_tf.layers.optimizers import PartRateAdam, PartRateAdamW
from atomsets_tf.layers.target_scaler import TargetScaler
from atomsets_tf.layers.weighted_mean import WeightedMeanReadout
from atomsets_tf.layers.weighted_set2set import Set2SetCore, WeightedSet2Set
from atomsets_tf.layers.zero_inflated import ZeroInflatedOutput

__all__ = ["WeightedMeanReadout", "WeightedSet2Set", "Set2SetCore", "TargetScaler", "softplus2", "hard_sigmoid_keras2",
           "PartRateAdam", "PartRateAdamW", "ZeroInflatedOutput", "EnsembleMoments"]
