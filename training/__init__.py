"""Pieces the training and evaluation scripts share (baselines, ...); imports modeling, never the scripts."""
