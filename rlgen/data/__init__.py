"""Data preparation: image datasets (IDX files, seeded splits, cached tensors) and text corpora."""
