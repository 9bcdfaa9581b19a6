"""``python -m pipeline.calibrate ARGS``: measure the rate of a launch's model on its executor (the same
arguments as ``python -m pipeline.launch``), for the launch's estimate; ``pipeline.launch.calibration``."""

from pipeline.launch.cli import main

if __name__ == "__main__":
    main(calibrate=True)
