"""Print the weights registry as Markdown: ``python -m dynpnp_jax.weights_table``."""
from dynpnp_jax.weights import weights_table

if __name__ == "__main__":
    print(weights_table())
