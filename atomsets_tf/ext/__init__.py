"""atomsets_tf.ext."""
