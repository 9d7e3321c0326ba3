"""When to step beta down: the eigenvalue trajectory at beta 0.1 and the outcome of switching at each point."""
import os
import sys, time, json, dataclasses
import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from convngc import data, metrics
from convngc.model import ConvNGC
from convngc.experiments.study import stability
from ngc_ref.config import Config

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
D = os.environ.get("CONVNGC_DATA_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data"))
xtr = data.to_model(data.load_dataset("cifar10", "train", data_dir=D, seed=0, limit=10000)[0])
xva = data.to_model(data.load_dataset("cifar10", "val", data_dir=D, seed=0, limit=300)[0])

def psnr(model):
    return metrics.evaluate_metrics(model.reconstruct(xva), xva)["psnr"]

rng = np.random.default_rng([seed, 2])
def train(m, n, rng):
    k = 0
    while k < n:
        for idx in np.array_split(rng.permutation(len(xtr)), len(xtr)//100):
            m.learn(xtr[idx]); k += 1
            if k >= n: break

def eig(m):
    t = time.time()
    ev, share = stability(m.host_params(), m.cfg, xva[:20], T=m.cfg.T, iters=40)
    return ev, time.time() - t

m = ConvNGC(Config(beta=0.1, T=60, lr=3e-3), backend="cpu", seed=seed)
res = []
t0 = time.time()
for k in range(1, 13):
    train(m, 100, rng)
    ev, dt = eig(m)
    row = {"updates": 100 * k, "psnr_b01": psnr(m), "eig_b01": ev, "eig_s": dt}
    p = m.host_params()
    # as evaluated at beta 0.05 / T 120 without training
    c05 = dataclasses.replace(m.cfg, beta=0.05, T=120, gamma=0.0005)
    e = ConvNGC(c05, backend="cpu", seed=seed, params=p)
    row["psnr_b005_notrain"] = psnr(e)
    # switch now: 200 updates at beta 0.05 fresh adam
    s = ConvNGC(c05, backend="cpu", seed=seed, params=p)
    r2 = np.random.default_rng([seed, 3, k])
    train(s, 100, r2); row["switch_100"] = psnr(s)
    train(s, 100, r2); row["switch_200"] = psnr(s); row["switch_eig"] = eig(s)[0]
    if k == 6:
        s2 = ConvNGC(c05, backend="cpu", seed=seed, params=p); s2.load_opt_state(m.host_opt_state())
        train(s2, 200, np.random.default_rng([seed, 3, k])); row["switch_keepadam_200"] = psnr(s2)
        s3 = ConvNGC(m.cfg, backend="cpu", seed=seed, params=p)
        train(s3, 200, np.random.default_rng([seed, 3, k])); row["freshadam_b01_200"] = psnr(s3)
    row["t"] = time.time() - t0
    print(json.dumps(row), flush=True)
    res.append(row)
