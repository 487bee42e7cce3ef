"""Graph builders, one module per model type, each offering the protocol in
`protocol.py`."""

from longmem.nets import caesar, hmlstm, lstm

NETS = {"lstm": lstm, "hmlstm": hmlstm, "caesar": caesar}
