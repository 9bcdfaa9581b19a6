"""Library noise off by default: transformers' and huggingface_hub's warnings and progress bars stay out of
the launcher's and the workers' output unless ``verbose=true``. The pipeline's own lines and bars stay."""

from __future__ import annotations

import logging
import os
import warnings


def silence_libraries(verbose: bool) -> None:
    """Quiet transformers, huggingface_hub and the Python warnings they raise (in this process)."""
    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|torchvision|huggingface_hub)")
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("transformers", "huggingface_hub", "torchvision"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        import huggingface_hub.utils

        huggingface_hub.utils.disable_progress_bars()
    except ImportError:
        pass
