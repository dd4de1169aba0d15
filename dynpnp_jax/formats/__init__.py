"""Readers of upstream weight-file formats: MatConvNet v7.3 (HDF5) and torch.save state dicts.

Each reader returns plain numpy arrays; the network families in :mod:`dynpnp_jax.zoo` map them to
Flax variables.
"""
