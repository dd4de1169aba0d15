"""Print the weights registry as Markdown: ``python -m dynpnp_jax.weights_table [--files]``.

docs/networks.md carries the summary table; weights/README.md the per-file table (``--files``);
tests/test_docs.py checks that both equal the registry.
"""
import sys

from dynpnp_jax.weights import weights_files_table, weights_table

if __name__ == "__main__":
    print(weights_files_table() if "--files" in sys.argv[1:] else weights_table())
