"""Graph builders, one module per model type, each offering the protocol in
`protocol.py`."""

from longmem.nets import caesar, hmlstm, lstm, mingru, minlstm, model1, model2, transformer

NETS = {"lstm": lstm, "hmlstm": hmlstm, "model1": model1, "model2": model2, "mingru": mingru, "minlstm": minlstm,
        "transformer": transformer, "caesar": caesar}
