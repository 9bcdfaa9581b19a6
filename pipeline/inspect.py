"""``python -m pipeline.inspect``: the command's name; the tool is ``pipeline.tools.inspection``."""

import sys

from pipeline.tools.inspection import main

if __name__ == "__main__":
    sys.exit(main())
