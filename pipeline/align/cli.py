"""``python -m pipeline.align``: a BIDS dataset's stimulus features as derivatives, with the argument style
of the other store tools (``key=value`` words, ``pipeline.tools.args.parse_args``).

Exit status: 0 done; 1 some stimulus videos are not in the store (the message lists them and prints the
launcher command that computes them); 2 a bad argument, dataset or events file (the message says which).
"""

from __future__ import annotations

import math
import re
import sys
import typing as tp
import warnings

USAGE = """usage: python -m pipeline.align bids=DATASET config=CONFIG [store=embeddings.zarr] [desc=LABEL]
         [hrf=none|spm|glover] [delays=S,S,...] [binning=mean|lowpass] [zscore=false|true]
         [oversampling=50] [overlap=refuse|sum] [slice_time_ref=0] [n_scans=N] [stimuli=DIR]
         [trial_type=TYPE,...] [name=pipeline]

Writes DATASET/derivatives/<name>/sub-*/[ses-*/]func/<run>_desc-<LABEL>_stim.tsv.gz (one row per volume,
no header) and its JSON sidecar for every sub-*/[ses-*/]func/*_events.tsv of DATASET.

  config        a config UID of the store, or the launch command's words in one argument:
                config='model=tiny_videomae frequency=8'; several feature spaces side by side, separated
                by ';': config='model=tiny_videomae; model=tiny_vit' (columns <space>/<layer>/f<j>)
  desc          the derivatives' label (letters and digits; default: the models, hrf and a digest of
                every setting, so that other settings never share a label)
  hrf           HRF convolution (nilearn's, oversampled); none: the features binned per volume
  delays        FIR delays in seconds (hrf=none), features stacked per delay
  binning       mean: each volume's time-weighted mean; lowpass: anti-aliased resampling
  n_scans       scan count for runs with neither a _bold.nii[.gz] nor NumberOfVolumes in their sidecar
  slice_time_ref  the rows' time within each TR (0: acquisition start, 0.5: middle), as nilearn's
  stimuli       the stimuli folder (default DATASET/stimuli)"""

ALLOWED = {
    "bids",
    "config",
    "store",
    "desc",
    "hrf",
    "delays",
    "binning",
    "zscore",
    "oversampling",
    "overlap",
    "slice_time_ref",
    "n_scans",
    "stimuli",
    "trial_type",
    "name",
}
_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _fail(message: str) -> tp.NoReturn:
    from pipeline.tools.args import UsageError

    raise UsageError(f"{message}\n{USAGE}")


def _choice(values: dict[str, str], key: str, choices: tuple[str, ...], default: str) -> str:
    value = values.get(key, default)
    if value not in choices:
        _fail(f"{key}: one of {', '.join(choices)} (got {value!r})")
    return value


def _number(values: dict[str, str], key: str, kind: type, low: float, high: float = math.inf) -> tp.Any:
    if key not in values:
        return None
    try:
        value = kind(values[key])
    except ValueError:
        _fail(f"{key}: {'an integer' if kind is int else 'a number'} (got {values[key]!r})")
    if not (low <= value <= high) or (kind is float and not math.isfinite(value)):
        _fail(f"{key}: between {low:g} and {high:g} (got {values[key]!r})")
    return value


def settings_from(values: dict[str, str]) -> tp.Any:
    """The alignment settings from the command line, each checked with a message that names it."""
    from pipeline.align.core import BINNINGS
    from pipeline.align.export import Settings
    from pipeline.align.response import HRF_MODELS

    delays = None
    if "delays" in values:
        text = values["delays"].strip().strip("[]")
        try:
            delays = tuple(float(d) for d in text.split(",") if d.strip())
        except ValueError:
            _fail(f"delays: seconds separated by commas, e.g. delays=0,1.5,3 (got {values['delays']!r})")
        if not delays or not all(math.isfinite(d) for d in delays):
            _fail(f"delays: at least one finite number of seconds (got {values['delays']!r})")
    zscore = values.get("zscore", "false").lower()
    if zscore not in _TRUE:
        _fail(f"zscore: true or false (got {values['zscore']!r})")
    hrf = _choice(values, "hrf", HRF_MODELS, "none")
    if hrf != "none" and delays is not None:
        _fail("delays: FIR delays replace the HRF; give hrf=none (the default) with delays")
    trial_type = tuple(t for t in values["trial_type"].split(",") if t) if "trial_type" in values else None
    return Settings(
        hrf=hrf,
        delays=delays,
        binning=_choice(values, "binning", BINNINGS, "mean"),
        oversampling=_number(values, "oversampling", int, 1, 10_000) or 50,
        zscore=_TRUE[zscore],
        overlap=tp.cast(tp.Literal["refuse", "sum"], _choice(values, "overlap", ("refuse", "sum"), "refuse")),
        slice_time_ref=_number(values, "slice_time_ref", float, 0.0, 1.0) or 0.0,
        trial_type=trial_type,
    )


def _show_warning(
    message: tp.Any, category: tp.Any, filename: str, lineno: int, file: tp.Any = None, line: tp.Any = None
) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from pipeline.align.errors import MissingVideosError, StimulusFilesNotFoundError
    from pipeline.align.export import export_bids
    from pipeline.tools.args import open_store, parse_args

    values, _, words = parse_args(argv, ALLOWED, set(), USAGE)
    if words:
        _fail(f"unexpected argument(s): {' '.join(words)} (every argument is key=value)")
    for key in ("bids", "config"):
        if not values.get(key):
            _fail(f"{key}= is required")
    settings = settings_from(values)
    n_scans = _number(values, "n_scans", int, 1)
    desc = values.get("desc")
    if desc is not None and not re.fullmatch(r"[a-zA-Z0-9]+", desc):
        _fail(f"desc: a BIDS label, letters and digits only (got {desc!r})")
    name = values.get("name", "pipeline")
    if not name or "/" in name or name in (".", ".."):
        _fail(f"name: a folder name under derivatives/ (got {name!r})")
    store = open_store(values)
    warnings.showwarning = _show_warning
    try:
        configs = [c.strip() for c in values["config"].split(";") if c.strip()]
        export_bids(
            values["bids"],
            store,
            configs[0] if len(configs) == 1 else configs,
            settings=settings,
            desc=desc,
            name=name,
            n_scans=n_scans,
            stimuli=values.get("stimuli"),
        )
    except MissingVideosError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ValueError, StimulusFilesNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
