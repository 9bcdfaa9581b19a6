"""What the demo and the tests run on, apart from the product: tiny randomly initialised models built from
each family's transformers Config class (``tiny``), the bundled sample videos (``sample``) and fault
injection hooks (``faults``). It imports nothing else of the pipeline."""
