"""``python -m pipeline.status``: the command's name; the tool is ``pipeline.tools.status``."""

import sys

from pipeline.tools.status import main

if __name__ == "__main__":
    sys.exit(main())
