"""The second limit: from P1's best checkpoint (beta 0.05 rung), what continues to improve?"""
import os
import sys, json, dataclasses, math, time
import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from convngc import data, metrics, checkpoint
from convngc.model import ConvNGC, DivergenceError
from convngc.stability import settle_eigenvalue, gains

name = sys.argv[1]
D = os.environ.get("CONVNGC_DATA_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data"))
xtr = data.to_model(data.load_dataset("cifar10", "train", data_dir=D, seed=0, limit=10000)[0])
xva = data.to_model(data.load_dataset("cifar10", "val", data_dir=D, seed=0, limit=300)[0])
cfg, p, opt, meta = checkpoint.load(os.environ.get("P1_BEST", "runs/p1/best8.npz"))
VARIANTS = {
    "r2-lr3e-3": dict(beta=0.025, T=240, gamma=0.00025),
    "r2-lr1e-3": dict(beta=0.025, T=240, gamma=0.00025, lr=1e-3),
    "r2-cap2": dict(beta=0.025, T=240, gamma=0.00025, max_kernel_norm=2.0),
    "r1-cap2": dict(max_kernel_norm=2.0),
    "r1-fresh-lr1e-3": dict(lr=1e-3),
    "r2-pcn-lr1e-3": dict(beta=0.025, T=240, gamma=0.00025, lr=1e-3, pcn=True),
    "r2-lr3e-4": dict(beta=0.025, T=240, gamma=0.00025, lr=3e-4),
    "r2-leak1-lr1e-3": dict(beta=0.025, T=240, gamma=0.00025, lr=1e-3, leak=1.0),
}
c = dataclasses.replace(cfg, **VARIANTS[name])
m = ConvNGC(c, backend="cpu", seed=0, params=p)
rng = np.random.default_rng([5, 2])
def psnr():
    return metrics.evaluate_metrics(m.reconstruct(xva), xva)["psnr"]
def atcap():
    return [round(float((np.linalg.norm(w.reshape(-1, 9), axis=1) > c.max_kernel_norm * 0.999).mean()), 2) for w in m.host_params()["W"][1:]]
print(json.dumps({"name": name, "update": 0, "psnr": psnr(), "atcap": atcap()}), flush=True)
k = 0; t0 = time.time()
while k < 400:
    for idx in np.array_split(rng.permutation(len(xtr)), 100):
        try:
            e = m.learn(xtr[idx])
        except DivergenceError:
            print(json.dumps({"name": name, "update": k, "diverged": True}), flush=True); sys.exit()
        k += 1
        if k % 50 == 0:
            print(json.dumps({"name": name, "update": k, "psnr": psnr(), "energy": e,
                              "eig": settle_eigenvalue(m.host_params(), m.cfg, xva[:20])[0],
                              "gains": [round(g, 1) for g in gains(m.host_params(), m.cfg)[1:]],
                              "atcap": atcap(), "t": time.time() - t0}), flush=True)
        if k >= 400: break
