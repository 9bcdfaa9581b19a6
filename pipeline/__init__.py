"""Turn a folder of videos into time-resolved model embeddings in a shared zarr store."""

__version__ = "0.1.0"
