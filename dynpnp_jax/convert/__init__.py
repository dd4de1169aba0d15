"""Converters from the upstream weight formats to Flax variables (one module per format)."""
