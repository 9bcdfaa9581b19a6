"""``python -m pipeline`` is ``python -m pipeline.launch``."""

from pipeline.launch.cli import main

main()
