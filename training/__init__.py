"""What the training and evaluation scripts share: data loading and checks, the user-error type,
the precision, caption data and generation, checkpoints, plots and baselines.

Imports modeling, never the scripts (and the data layer, hf_dataset, imports nothing of this)."""
