"""Data: the splits a run trains on, IDX files, and where a dataset name is looked for."""
