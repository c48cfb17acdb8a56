"""Views of one experiment over the lake (read-only): the report (HTML, Markdown) and the live dashboard."""
