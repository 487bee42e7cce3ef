"""Graph builders, one module per model type."""

from longmem.nets import lstm

NETS = {"lstm": lstm}
