"""The clip quality classifier: features, hand labels, training/evaluation, and the model artifact."""
