"""Graph builders, one module per model type, each offering the protocol in
`protocol.py`."""

from longmem.nets import caesar, hmlstm, lstm, mingru, minlstm, mlstm, model1, model2, slstm, transformer

NETS = {"lstm": lstm, "hmlstm": hmlstm, "model1": model1, "model2": model2, "mingru": mingru, "minlstm": minlstm,
        "mlstm": mlstm, "slstm": slstm, "transformer": transformer, "caesar": caesar}
