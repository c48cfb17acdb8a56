"""Read models of one experiment over the lake (read-only) and their views: the report (HTML and
Markdown, `robolake report`) and the live dashboard (`robolake dashboard`)."""
