"""``python -m pipeline.align bids=DATASET config=CONFIG store=STORE ...`` (see ``pipeline.align.cli``)."""

import sys

from .cli import main

sys.exit(main())
