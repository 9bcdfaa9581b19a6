"""``python -m pipeline.gc``: the command's name; the tool is ``pipeline.tools.collect``."""

import sys

from pipeline.tools.collect import main

if __name__ == "__main__":
    sys.exit(main())
