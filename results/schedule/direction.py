"""Is the learning rule a descent direction for the settled energy? F_T(W) = mean energy after settling T steps
(fixed z^L draw, fixed batch). Central differences along dW (the rule's displacement) and along Adam's step."""
import os
import sys, dataclasses, json
import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from convngc import data, checkpoint
from ngc_cpu import model as cm
from ngc_ref.model import draw_top

D = os.environ.get("CONVNGC_DATA_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data"))
x = data.to_model(data.load_dataset("cifar10", "train", data_dir=D, seed=0, limit=200)[0]).astype(np.float64)
path = sys.argv[1]
cfg, p, opt, meta = checkpoint.load(path)
p = {k: None if v is None else [None if a is None else a.astype(np.float64) for a in v] for k, v in p.items()}
for variant in sys.argv[2:]:
    c = dataclasses.replace(cfg, **json.loads(variant))
    zt = draw_top(c, len(x), np.random.default_rng(0), np.float64)
    def F(pp):
        return float(cm.settle(pp, x, c, zt).energy[-1].mean())
    res = cm.settle(p, x, c, zt)
    d = cm.filter_updates(res, p, c)
    norm = np.sqrt(sum(float((w ** 2).sum()) for w in d["W"][1:]))
    out = {"variant": variant, "F": F(p), "dW_norm": norm}
    for eps in (1e-3, 1e-2):
        shift = lambda s: dict(p, W=[None] + [w + s * eps * dw / norm for w, dw in zip(p["W"][1:], d["W"][1:])])
        out["dF/deps(%g)" % eps] = (F(shift(1)) - F(shift(-1))) / (2 * eps)
    # the true gradient of F_T along dW's direction, per layer contribution
    print(json.dumps(out), flush=True)
