"""What consumes the log: the lake sink, skill summaries, the curriculum (VLM), analysis, the conversation."""
