"""robolake's composition root: the CLI, the experiment that composes every part, its views, and its Python API."""
from robolake.api import open_lake, run  # noqa: F401  (robolake.run, robolake.open_lake: robolake/api.py)
