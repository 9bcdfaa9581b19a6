"""Small helpers every layer may use: atomic files, the job's environment, tables and sizes, library noise.

The lowest layer: it imports nothing else of the pipeline.
"""
