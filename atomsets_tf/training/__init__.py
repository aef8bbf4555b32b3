"""atomsets_tf.training."""
