"""``python -m pipeline.report``: the command's name; the tool is ``pipeline.tools.report``."""

import sys

from pipeline.tools.report import main

if __name__ == "__main__":
    sys.exit(main())
