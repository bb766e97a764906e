"""Data: the splits a run trains on and their batches, IDX files, and where a dataset name is looked for;
images into arrays, Hugging Face datasets (the Hub, ``save_to_disk`` folders), image folders, and the
``hf:`` / ``disk:`` / ``folder:`` forms."""
