"""Training of hash models through the pipeline; one module per method (see ``base.py`` for the contract)."""
