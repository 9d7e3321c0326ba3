"""Lead check of issue 15, findings 1 and 4, on this repository's code (cpu backend)."""
import os
import sys, time, json, dataclasses
import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from convngc import data, metrics
from convngc.model import ConvNGC
from ngc_ref.config import Config
from ngc_ref.model import draw_top, output_image
from ngc_cpu import model as cm

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
D = os.environ.get("CONVNGC_DATA_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data"))
xtr = data.to_model(data.load_dataset("cifar10", "train", data_dir=D, seed=0, limit=10000)[0])
xva = data.to_model(data.load_dataset("cifar10", "val", data_dir=D, seed=0, limit=300)[0])
print("data", xtr.shape, xva.shape, flush=True)

def recon(model, x, T=None):
    return metrics.evaluate_metrics(model.reconstruct(x, T=T), x)

def denoise_pi0(model, x, pi0, T, seed=0):
    rng = np.random.default_rng(seed)
    xn = (x + rng.normal(0, 0.1, x.shape)).astype(np.float32)
    p = model.host_params()
    p["E"] = [None] + [w.copy() for w in p["W"][1:]]
    p["E"][1] = p["E"][1] * np.float32(pi0)
    zt = draw_top(model.cfg, len(x), np.random.default_rng([seed, 1]))
    out = []
    for i in range(0, len(x), 100):
        r = cm.settle(p, xn[i:i+100], model.cfg, zt[i:i+100], T=T)
        out.append(r.zbar[0])
    out = np.concatenate(out)
    return metrics.evaluate_metrics(out, x), metrics.evaluate_metrics(xn, x)

def fmt(m):
    return "mse %.2f psnr %.2f" % (m["mse"], m["psnr"])

rng = np.random.default_rng([seed, 2])
m = ConvNGC(Config(beta=0.1, T=60, lr=3e-3), backend="cpu", seed=seed)
t0 = time.time()
def train(m, n):
    k = 0
    while k < n:
        for idx in np.array_split(rng.permutation(len(xtr)), len(xtr)//100):
            m.learn(xtr[idx]); k += 1
            if k >= n: break
train(m, 600)
print("600 upd beta0.1: recon", fmt(recon(m, xva)), "%.0fs" % (time.time()-t0), flush=True)
p0 = m.host_params()
# A: 100 more at beta 0.1
mA = ConvNGC(m.cfg, backend="cpu", seed=seed, params=p0); mA.load_opt_state(m.host_opt_state())
train(mA, 100); print("A +100 beta0.1:", fmt(recon(mA, xva)), flush=True)
# B: beta 0.05 T 120 gamma 0.0005 fresh adam
cfgB = dataclasses.replace(m.cfg, beta=0.05, T=120, gamma=0.0005)
mB = ConvNGC(cfgB, backend="cpu", seed=seed, params=p0)
train(mB, 100); print("B +100 beta0.05 fresh:", fmt(recon(mB, xva)), flush=True)
train(mB, 100); print("B +200 beta0.05 fresh:", fmt(recon(mB, xva)), flush=True)
for pi0, T in ((1, 120), (0.25, 240), (0.1, 480), (0.07, 480)):
    d, n = denoise_pi0(mB, xva, pi0, T)
    print("  denoise pi0 %g T %d: %s (noisy %s)" % (pi0, T, fmt(d), fmt(n)), flush=True)
np.savez("runs/fresh_adam_seed%d.npz" % seed, **{"W%d" % l: w for l, w in enumerate(mB.host_params()["W"]) if w is not None})
train(mB, 100); print("B +300 beta0.05:", fmt(recon(mB, xva)), flush=True)
train(mB, 100); print("B +400 beta0.05:", fmt(recon(mB, xva)), flush=True)
print("total %.0fs" % (time.time()-t0))
