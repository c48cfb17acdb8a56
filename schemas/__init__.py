"""Event contracts at the bottom of the house: event types and versions, topics, the Arrow codec, lake tables."""
