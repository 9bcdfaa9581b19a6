"""``python -m pipeline.align bids=DATASET config=CONFIG store=STORE ...`` (see ``pipeline.align.cli``)."""

import sys

from pipeline.align.cli import main

sys.exit(main())
