"""atomsets_tf.data."""
