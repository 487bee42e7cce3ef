"""Graph builders, one module per model type, each offering the protocol in
`protocol.py`."""

from longmem.nets import caesar, lstm

NETS = {"lstm": lstm, "caesar": caesar}
