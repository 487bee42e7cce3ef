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


def hmlstm_forward(params, x, h0, c0, z0, slope=1.0):
    """logits (T, B, V), h, c (L, B, H), z (L, B) and the boundaries (T, L, B) of the
    hierarchical multiscale LSTM for codes x (T, B), one step and one layer at a time."""
    L = sum(1 for k in params if k.endswith(".U"))
    p = {k: v.astype(np.float64) for k, v in params.items()}
    H = p["hm.0.U"].shape[0]
    T, B = x.shape
    h, c, z = h0.astype(np.float64).copy(), c0.astype(np.float64).copy(), z0.astype(np.float64).copy()
    logits, boundaries = [], []
    for t in range(T):
        z_below = np.ones(B)
        for l in range(L):
            bottom = p["hm.0.W"][x[t]] if l == 0 else z_below[:, None] * (h[l - 1] @ p[f"hm.{l}.W"])
            s = bottom + p[f"hm.{l}.b"] + h[l] @ p[f"hm.{l}.U"]
            if l < L - 1:
                s = s + z[l][:, None] * (h[l + 1] @ p[f"hm.{l}.V"])
            i, f, o = sigmoid(s[:, :H]), sigmoid(s[:, H:2 * H]), sigmoid(s[:, 2 * H:3 * H])
            g = np.tanh(s[:, 3 * H:4 * H])
            soft = np.clip((slope * s[:, 4 * H] + 1) / 2, 0, 1)
            new_z = (soft > 0.5).astype(np.float64) if l < L - 1 else np.zeros(B)
            for b in range(B):
                if z[l, b] == 1:  # FLUSH
                    c[l, b] = i[b] * g[b]
                    h[l, b] = o[b] * np.tanh(c[l, b])
                elif z_below[b] == 1:  # UPDATE
                    c[l, b] = f[b] * c[l, b] + i[b] * g[b]
                    h[l, b] = o[b] * np.tanh(c[l, b])
                # else COPY: c and h stay
            z[l] = new_z
            z_below = new_z
        boundaries.append(z.copy())
        flat = np.concatenate([h[l] for l in range(L)], axis=1)
        gates = sigmoid(flat @ p["out.gate"])
        e = np.maximum(sum(gates[:, l, None] * (h[l] @ p[f"hm.{l}.E"]) for l in range(L)), 0)
        logits.append(e @ p["out.W"] + p["out.b"])
    return np.stack(logits), h, c, z, np.stack(boundaries)


def model2_forward(params, x, state, fixed_u=None, fixed_dc=None):
    """The waves model for codes x (T, B): logits (T, B, V), u and dc (T, B, A).

    fixed_u / fixed_dc: (T, B, A) sequences that replace what A reads from B
    (u of the step before) and what B reads from A, as the stop-gradients do."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    A, Bc = p["a.Wh"].shape[0], p["b.Wh"].shape[0]

    def cell(z, c, n):
        i, f, o, g = sigmoid(z[:, :n]), sigmoid(z[:, n:2 * n]), sigmoid(z[:, 2 * n:3 * n]), np.tanh(z[:, 3 * n:])
        c = f * c + i * g
        return o * np.tanh(c), c

    ha, ca, hb, cb, u = (state[k][0].astype(np.float64) for k in ("a.h", "a.c", "b.h", "b.c", "u"))
    logits, us, dcs = [], [], []
    for t in range(x.shape[0]):
        u_in = u if fixed_u is None else (state["u"][0] if t == 0 else fixed_u[t - 1])
        ha, ca_new = cell(p["a.Wx"][x[t]] + p["a.b"] + u_in @ p["a.Wu"] + ha @ p["a.Wh"], ca, A)
        dc = ca_new - ca if fixed_dc is None else fixed_dc[t]
        ca = ca_new
        hb, cb = cell(dc @ p["b.Wx"] + p["b.b"] + hb @ p["b.Wh"], cb, Bc)
        u = np.tanh(hb @ p["u.W"] + p["u.b"])
        logits.append(ha @ p["out.W"] + p["out.b"])
        us.append(u)
        dcs.append(dc)
    return np.stack(logits), np.stack(us), np.stack(dcs)


def lstm_cells(Wx_rows, Wh, b, h, c):
    """One-layer LSTM over precomputed input rows (T, B, 4H): hs and cs (T, B, H)."""
    H = Wh.shape[0]
    hs, cs = [], []
    for t in range(len(Wx_rows)):
        z = Wx_rows[t] + b + h @ Wh
        i, f, o, g = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), sigmoid(z[:, 2 * H:3 * H]), np.tanh(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs), np.stack(cs)


def model1_forward(params, x, state, fixed_pred=None):
    """Model 1 for codes x (T, B): logits (T, B, V), delta and stage 2's predictions (T, B, H1).
    fixed_pred replaces the predictions stage 3 reads (as its stop-gradient does)."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    s = {k: v[0].astype(np.float64) for k, v in state.items()}
    _, cs1 = lstm_cells(p["stage1.Wx"][x], p["stage1.Wh"], p["stage1.b"], s["stage1.h"], s["stage1.c"])
    delta = cs1 - np.concatenate([s["stage1.c"][None], cs1[:-1]])
    hs2, _ = lstm_cells(p["stage2.Wx"][x] + delta @ p["stage2.Wd"], p["stage2.Wh"], p["stage2.b"],
                        s["stage2.h"], s["stage2.c"])
    pred = hs2 @ p["stage2.P"] + p["stage2.p"]
    read = pred if fixed_pred is None else fixed_pred
    hs3, _ = lstm_cells(p["stage3.Wx"][x] + read @ p["stage3.Wp"], p["stage3.Wh"], p["stage3.b"],
                        s["stage3.h"], s["stage3.c"])
    return hs3 @ p["out.W"] + p["out.b"], delta, pred


def check_against_finite_differences(got, params, cost_of, samples=8, eps=1e-5, atol=1e-4):
    """Compare gradients `got` (name -> array) with central differences of
    `cost_of(name)`, which reads the float64 `params` (changed in place), at about
    `samples` elements of each parameter."""
    for name, g in got.items():
        arr = params[name]
        for idx in list(np.ndindex(arr.shape))[:: max(1, arr.size // samples)]:
            old = arr[idx]
            arr[idx] = old + eps
            up = cost_of(name)
            arr[idx] = old - eps
            down = cost_of(name)
            arr[idx] = old
            numeric = (up - down) / (2 * eps)
            assert abs(g[idx] - numeric) < atol + 1e-2 * abs(numeric), (name, idx, g[idx], numeric)


def _g(x):
    """minrnn's positive activation of the candidate value."""
    return np.where(x >= 0, x + 0.5, sigmoid(x))


def residual_blocks(P, x, mix, masks=None):
    """logits (T, B, V) of parts.py's pre-norm residual blocks over codes x (T, B);
    mix(l, v) is block l's own part. masks: name -> (T, B, H) multipliers."""
    layers, masks = sum(1 for k in P if k.endswith(".ff.W1")), masks or {}
    rms = lambda v, gain: v / np.sqrt((v * v).mean(-1, keepdims=True) + 1e-6) * gain  # noqa: E731
    gelu = lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))  # noqa: E731
    u = P["embed"][x]
    for l in range(layers):
        u = u + mix(l, rms(u, P[f"block.{l}.norm"])) * masks.get(f"block.{l}.dropout", 1.0)
        v = gelu(rms(u, P[f"block.{l}.ff.norm"]) @ P[f"block.{l}.ff.W1"] + P[f"block.{l}.ff.b1"])
        u = u + (v @ P[f"block.{l}.ff.W2"] + P[f"block.{l}.ff.b2"]) * masks.get(f"block.{l}.ff.dropout", 1.0)
    return rms(u, P["norm"]) @ P["out.W"] + P["out.b"]


def minrnn_forward(params, x, h0, cell, masks=None):
    """logits (T, B, V) and h (L, B, H) of a minGRU or minLSTM stack (`cell`), each
    block's recurrence one step at a time. masks: name -> (T, B, H) multipliers."""
    P = {k: v.astype(np.float64) for k, v in params.items()}
    H, last = P["embed"].shape[1], []

    def scan(l, v):
        k = v @ P[f"block.{l}.W"] + P[f"block.{l}.b"]
        h, hs = h0[l].astype(np.float64), []
        for t in range(x.shape[0]):
            if cell == "mingru":
                z = sigmoid(k[t, :, :H])
                h = (1 - z) * h + z * _g(k[t, :, H:])
            else:
                f, i = sigmoid(k[t, :, :H]), sigmoid(k[t, :, H : 2 * H])
                h = f / (f + i) * h + i / (f + i) * _g(k[t, :, 2 * H :])
            hs.append(h)
        last.append(h)
        return np.stack(hs)

    return residual_blocks(P, x, scan, masks), np.stack(last)


def _rotate(x, position):
    """x (..., d) turned by `position` (a number), pairs (i, i + d/2) at 10000^(-2i/d)."""
    d = x.shape[-1]
    angle = position * 10000.0 ** (-np.arange(d // 2) * 2.0 / d)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return np.concatenate([x1 * np.cos(angle) - x2 * np.sin(angle), x1 * np.sin(angle) + x2 * np.cos(angle)], -1)


def transformer_forward(params, x, k0, v0, seen0, masks=None, offset=1000):
    """logits (T, B, V) and the last `context` keys and values (L, B, C, H) of the
    transformer, one query at a time: each reads the keys, among the carried ones
    it has seen and the window's, of itself and the C positions before it. The
    positions are counted from `offset` (only their differences may matter)."""
    P = {k: v.astype(np.float64) for k, v in params.items()}
    layers, B, C, H = k0.shape
    T, kept = x.shape[0], []

    def attend(l, u):
        heads = P[f"block.{l}.scale"].shape[0]
        d = H // heads
        qkv = u @ P[f"block.{l}.Wqkv"]  # (T, B, 3H)
        keys = np.concatenate([k0[l], qkv[:, :, H : 2 * H].transpose(1, 0, 2)], 1)  # (B, C + T, H)
        values = np.concatenate([v0[l], qkv[:, :, 2 * H :].transpose(1, 0, 2)], 1)
        seen = np.concatenate([seen0[0], np.ones((B, T))], 1)
        kept.append((keys[:, T:], values[:, T:]))
        out = np.zeros((T, B, H))
        for t in range(T):
            for b in range(B):
                for h in range(heads):
                    part = slice(h * d, (h + 1) * d)
                    q = _rotate(qkv[t, b, part], offset + t)
                    js = [j for j in range(t, C + t + 1) if seen[b, j]]  # slot j holds position j - C
                    scores = np.array([q @ _rotate(keys[b, j, part], offset + j - C) for j in js])
                    w = np.exp(scores * P[f"block.{l}.scale"][h] - (scores * P[f"block.{l}.scale"][h]).max())
                    out[t, b, part] = (w / w.sum()) @ values[b, js, part]
        return out @ P[f"block.{l}.Wo"]

    logits = residual_blocks(P, x, attend, masks)
    return logits, np.stack([k for k, _ in kept]), np.stack([v for _, v in kept])


def mlstm_forward(params, x, C0, n0, m0, masks=None):
    """logits (T, B, V) and the memories after the window (C, n, m) of the mLSTM stack,
    one step, stream and head at a time, as the xLSTM paper writes the cell (each
    head's read normalised alone)."""
    P = {k: v.astype(np.float64) for k, v in params.items()}
    layers, B, heads, d = n0.shape
    H, kept = heads * d, []

    def mix(l, u):
        qkv = u @ P[f"block.{l}.Wqkv"]
        gates = u @ P[f"block.{l}.Wg"] + P[f"block.{l}.bg"]
        o = sigmoid(u @ P[f"block.{l}.Wo"] + P[f"block.{l}.bo"])
        C, n, m = C0[l].astype(np.float64).copy(), n0[l].astype(np.float64).copy(), m0[l].astype(np.float64).copy()
        out = np.zeros(u.shape)
        for t in range(u.shape[0]):
            for b in range(B):
                for h in range(heads):
                    q, k, v = (qkv[t, b, part * H + h * d : part * H + (h + 1) * d] for part in range(3))
                    k = k / np.sqrt(d)
                    i_pre, log_f = gates[t, b, h], -np.logaddexp(0, -gates[t, b, heads + h])
                    m_new = max(log_f + m[b, h], i_pre)
                    f_act, i_act = np.exp(log_f + m[b, h] - m_new), np.exp(i_pre - m_new)
                    C[b, h] = f_act * C[b, h] + i_act * np.outer(k, v)
                    n[b, h] = f_act * n[b, h] + i_act * k
                    m[b, h] = m_new
                    read = q @ C[b, h] / (max(abs(q @ n[b, h]), np.exp(-m_new)) + 1e-6)
                    read = read / np.sqrt((read * read).mean() + 1e-6) * P[f"block.{l}.hnorm"][h * d : (h + 1) * d]
                    out[t, b, h * d : (h + 1) * d] = o[t, b, h * d : (h + 1) * d] * read
        kept.append((C, n, m))
        return out @ P[f"block.{l}.Wout"]

    logits = residual_blocks(P, x, mix, masks)
    return logits, *(np.stack([memory[k] for memory in kept]) for k in range(3))


def slstm_forward(params, x, state, masks=None):
    """logits (T, B, V) and the state after the window (h, c, n, m) of the sLSTM stack,
    one step and unit at a time, each unit reading the last h of its head's units."""
    P = {k: v.astype(np.float64) for k, v in params.items()}
    layers, B, H = state["h"].shape
    kept = []

    def mix(l, u):
        R = P[f"block.{l}.R"]
        heads, d = R.shape[:2]
        h, c, n, m = (state[k][l].astype(np.float64).copy() for k in "hcnm")
        pre = u @ P[f"block.{l}.W"] + P[f"block.{l}.b"]
        out = np.zeros(u.shape)
        for t in range(u.shape[0]):
            last = h.copy()
            for b in range(B):
                for j in range(H):
                    head, e = divmod(j, d)
                    own = last[b, head * d : (head + 1) * d]  # the last h of this unit's head
                    z, i_pre, f_pre, o_pre = (pre[t, b, g * H + j] + own @ R[head, :, g * d + e] for g in range(4))
                    log_f = -np.logaddexp(0, -f_pre)
                    m_new = i_pre if n[b, j] == 0 else max(log_f + m[b, j], i_pre)
                    i_act, f_act = np.exp(i_pre - m_new), np.exp(log_f + m[b, j] - m_new)
                    c[b, j] = f_act * c[b, j] + i_act * np.tanh(z)
                    n[b, j] = f_act * n[b, j] + i_act
                    m[b, j] = m_new
                    h[b, j] = sigmoid(o_pre) * c[b, j] / n[b, j]
            out[t] = h
        kept.append((h, c, n, m))
        return out

    logits = residual_blocks(P, x, mix, masks)
    return logits, *(np.stack([each[k] for each in kept]) for k in range(4))
