"""FC-NGC at the quick scale, one trial (seed 0) on CIFAR-10 (or DATASET) with N training images x E epochs (batch 100), trained
and evaluated exactly as `convngc reproduce` does (run_part, one BLAS thread): does its validation curve pass
reproduce.converged's criterion? Prints the trial's log, then one JSON line.

    python bench/fc_convergence.py 10000 5      # 500 updates on 10,000 images
    python bench/fc_convergence.py 2000 25      # 500 updates on the quick scale's 2,000
    python bench/fc_convergence.py 10000 20 color-mnist
    python bench/fc_convergence.py 10000 6 color-mnist --lr 3e-3   # Adam 3e-3, not FCConfig's 1e-3
"""
import copy, sys, json, time
from convngc.experiments import reproduce
from ngc_ref import fc
args = sys.argv[1:]
lr = None
if "--lr" in args:
    i = args.index("--lr")
    lr = float(args[i + 1])
    del args[i:i + 2]
n, ep = int(args[0]), int(args[1])
ds = args[2] if len(args) > 2 else "cifar10"
sc = copy.deepcopy(reproduce.SCALES["quick"]); sc["train"]["fc-ngc"] = (n, ep, 100)
if lr is not None:          # the scale's Adam step for FC-NGC, as a "lr" entry of SCALES would give it
    sc.setdefault("lr", {})["fc-ngc"] = lr
sc["train"].pop(ds + "/fc-ngc", None)   # N x E, not the scale's size for this dataset
r = next(r for r in reproduce.all_rows() if r.id == ds + "/fc-ngc")
t = time.time()
part = reproduce.run_part("fc-ngc", ds, [r], sc, [0], 1, "numpy", None, log=print)
rec = part["trials"][r.id][0]
print(json.dumps({"dataset": ds, "n": n, "epochs": ep, "lr": lr or fc.FCConfig().lr, "seconds": time.time() - t, "val_mse": rec["history"]["val_mse"],
                  "convergence": rec["convergence"], "rec": rec["reconstruction"]["mse"]}))
