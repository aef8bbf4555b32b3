"""Small utilities shared across atomsets-tf."""
