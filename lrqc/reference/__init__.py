"""numpy reference: the oracle."""
