"""Checkpoints trained by this project with its own commands, each with a model card.

Installed as ``atomsets_tf.pretrained``; :mod:`atomsets_tf.presets` registers
every entry of ``presets.json`` as a preset, e.g.
``AtomSets.from_preset("atomsets-v0-expt_gap")`` or
``atomsets-tf predict atomsets-v0-expt_gap my_formulas.csv -o predictions.csv``.
``benchmarks/build_pretrained.py`` trains them again and rewrites this folder.
"""
