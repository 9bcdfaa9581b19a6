"""``python -m pipeline.cancel``: the command's name; the tool is ``pipeline.tools.cancel``."""

import sys

from pipeline.tools.cancel import main

if __name__ == "__main__":
    sys.exit(main())
