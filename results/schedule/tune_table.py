import os, sys; sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import numpy as np
from convngc import data, checkpoint, tune
from convngc.model import ConvNGC
D = os.environ.get("CONVNGC_DATA_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data"))
xva = data.to_model(data.load_dataset("cifar10", "val", data_dir=D, seed=0, limit=300)[0])
cfg, p, _, _ = checkpoint.load(os.environ.get("P1_BEST", "runs/p1/best8.npz"))
m = ConvNGC(cfg, "cpu", params=p)
table, best = tune.tune_denoising(m, xva, pi0s=(1, 0.5, 0.25, 0.15, 0.1, 0.07, 0.05, 0.035), factors=(1, 2, 4, 8, 16), log=print)
print(best)
