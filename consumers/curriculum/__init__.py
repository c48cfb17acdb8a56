"""The curriculum (the VLM experimenter): proposals, steps, skill retrieval, decisions, library growth."""
