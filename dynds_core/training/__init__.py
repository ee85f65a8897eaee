"""The pieces of :func:`dynds_core.train`: the training recipe (optimizer, learning-rate schedule,
AMP, device) and the loop of one run. ``dynds_core.trainer`` pairs runs and compares them."""
