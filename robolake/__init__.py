"""robolake's composition root: the CLI, the experiment that composes every part, and its views."""
