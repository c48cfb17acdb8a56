"""The offline learner: relabelling, datasets, captions, PAC, training, evaluation, lineage."""
