"""What the command line and the notebooks call: fit, retrain, predict, tap, and the files they write."""
