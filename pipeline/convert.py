"""``python -m pipeline.convert``: the command's name; the tool is ``pipeline.tools.convert``."""

import sys

from pipeline.tools.convert import main

if __name__ == "__main__":
    sys.exit(main())
