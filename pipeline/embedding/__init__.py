"""Computing the numbers: the reference reader's rules, the time grid, decoding, the model families'
adapters, aggregation, and the engines that run a model over videos (``engine`` in one process,
``feeding`` + ``batcher`` with decoding processes). No store, no jobs: those are above this layer."""
