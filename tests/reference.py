"""NumPy references for the compiled graphs (float64, loops written plainly)."""

import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_forward(params, x, h0, c0, masks=None, gate_sums=None):
    """logits (T, B, V), h and c (L, B, H) for codes x (T, B), one step at a time.

    masks: per layer, (T, B, H) multipliers of that layer's output (dropout).
    gate_sums: a dict that receives the sum of each gate over the window,
    keyed like the model's internals (`lstm.0.f`)."""
    layers = sum(1 for k in params if k.endswith(".Wh"))
    T, B = x.shape
    h = [h0[i].astype(np.float64) for i in range(layers)]
    c = [c0[i].astype(np.float64) for i in range(layers)]
    logits = []
    for t in range(T):
        inp = None
        for i in range(layers):
            Wx, Wh, b = (params[f"lstm.{i}.{k}"].astype(np.float64) for k in ("Wx", "Wh", "b"))
            H = Wh.shape[0]
            xp = Wx[x[t]] if i == 0 else inp @ Wx
            z = xp + b + h[i] @ Wh
            ig, fg, og, g = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), sigmoid(z[:, 2 * H:3 * H]), np.tanh(z[:, 3 * H:])
            c[i] = fg * c[i] + ig * g
            for name, gate in (("i", ig), ("f", fg), ("o", og), ("g", g)) if gate_sums is not None else ():
                gate_sums[f"lstm.{i}.{name}"] = gate_sums.get(f"lstm.{i}.{name}", 0.0) + gate.sum()
            h[i] = og * np.tanh(c[i])
            inp = h[i] if masks is None else h[i] * masks[i][t]
        logits.append(inp @ params["out.W"] + params["out.b"])
    return np.stack(logits), np.stack(h), np.stack(c)


def mean_nll(logits, y):
    """Mean cross-entropy in nats of targets y (T, B) under logits (T, B, V)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(lp, y[..., None], axis=-1).mean()
