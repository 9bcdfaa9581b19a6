"""``python -m pipeline.launch [Hydra overrides]``."""

from pipeline.launch.cli import main

main()
