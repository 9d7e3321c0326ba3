"""`convngc reproduce`: the paper's Tables 1-2 and Figures 3-4 from one command, next to its baselines and
classical denoisers.

    convngc reproduce --scale quick                       # every row the data here allows, 5 trials
    convngc reproduce --scale quick --rows 'cifar10/*'    # only the CIFAR-10 rows (fnmatch patterns)
    convngc reproduce --list                              # the rows, their sizes and the time estimate
    convngc reproduce --scale quick --workers 1           # one job after another in this process, no Ray
    convngc reproduce --scale quick --address auto        # on a Ray cluster (docs/cluster.md)

One row = one model on one dataset (its config: dataset, model, tasks, images, epochs, batch, seeds). A trial
trains the model from seed k (k = 0 .. trials-1) and evaluates it with seed k: the random initial states and the
denoising noise N(0, 0.1) of trial k are the same for every model (convngc.train.run_task's draws). Out-of-
distribution rows reuse the models trained for the source dataset's row in the same trial. Classical denoisers
are tuned once on validation images (never test images), then evaluated on the same noisy test images.

Writes, under --out (default: a new folder runs/reproduce-<time>; committed results are never overwritten without
--overwrite):
  <table>.md                   mean +/- std (population std over trials) next to the paper's numbers
  raw/<row>.json               the row's config and every trial's metrics, training history and timings
  figure3-<dataset>.png        clean / noisy / Conv-NGC-denoised test images (trial 0)
  figure4-<dataset>.png        the bottom three layers' state maps of Conv-NGC for one test image (trial 0)
  training-<dataset>-<model>.png  validation reconstruction MSE against epochs, one line per trial
Tables are rebuilt from every raw/*.json present, so runs of different --rows add up. A finished row of another
scale or config in --out/raw/ is never replaced: the run is refused, naming it, unless --overwrite is given.

Fan-out (fanout.py): a job (one model on one dataset, with every row that uses it) runs in parts, one per trial
(a classical denoiser: one part), as Ray tasks on --workers local processes (default: the cores here) or a
cluster (--address); without Ray, one after another in this process. Each part returns its numbers and figure
arrays to this process, which writes the job's rows, figures and tables once its last part is in: the raw JSON
is the same, bit for bit, whatever ran the parts (except the measured *_seconds). A failed job is reported by
its rows, the others go on; Ctrl-C keeps every finished row; --resume then skips them.

Within a row, a trained trial keeps its training state under --out/partial/ after every epoch (partial.py): a
trial stopped by Ctrl-C, a killed worker or the end of a session continues from its last epoch when the command
runs again on the same --out with --resume, bit-identically; the files go once the job's rows are written. A row that trains for hours
(the paper-scale autoencoders) can so be run in pieces.
"""
import argparse
import contextlib
import dataclasses
import fnmatch
import json
import os
import sys
import time

import numpy as np

from ngc_ref.config import Config

from .. import backends, data, metrics, train, viz
from ..usage import int_at_least
from ..backends import BACKENDS, BackendUnavailable
from ..fileio import NotARegularFile, open_regular, strict_json, write_json, write_text
from ..model import ConvNGC
from . import PAPER_SCALE, QUICK, fanout, repo_path

METRICS = ("mse", "ssim_global", "ssim", "psnr")
DECIMALS = {"mse": 2, "ssim_global": 4, "ssim": 4, "psnr": 2}
NAMES = {"conv-ngc": "Conv-NGC", "fc-ngc": "NGC (fully connected)", "conv-ae": "Conv-AE", "conv-dae": "Conv-DAE",
         "res-conv-ngc": "Residual Conv-NGC", "tv": "Total variation (Chambolle)", "nlm": "Non-local means",
         "bm3d": "BM3D"}
TRAINED = ("conv-ngc", "fc-ngc", "conv-ae", "conv-dae", "res-conv-ngc")
CLASSICAL = ("tv", "nlm", "bm3d")
DATASET_TITLES = {"color-mnist": "Color-MNIST", "cifar10": "CIFAR-10", "svhn": "SVHN", "cinic10": "CINIC-10"}

# The paper's numbers (mean, std over 5 trials). Tables 1 and 2a; "ssim_global" is the paper's SSIM (Eq. 5).
PAPER = {
    ("color-mnist", "conv-ae"): {"reconstruction": {"mse": (32.99, 1.068), "ssim_global": (0.9021, 0.0100)},
                                 "denoising": {"mse": (176.9321, 2.0923), "ssim_global": (0.6912, 0.007)}},
    ("color-mnist", "conv-dae"): {"reconstruction": {"mse": (23.09, 0.4722), "ssim_global": (0.9324, 0.0060)},
                                  "denoising": {"mse": (76.8610, 0.8511), "ssim_global": (0.8424, 0.003)}},
    ("color-mnist", "fc-ngc"): {"reconstruction": {"mse": (328.5659, 3.5), "ssim_global": (0.7652, 0.0032)},
                                "denoising": {"mse": (887.205, 18.25), "ssim_global": (0.5476, 0.0075)}},
    ("color-mnist", "conv-ngc"): {"reconstruction": {"mse": (11.2802, 0.5008), "ssim_global": (0.9838, 0.0005)},
                                  "denoising": {"mse": (202.2222, 1.0511), "ssim_global": (0.6732, 0.0006)}},
    ("cifar10", "conv-ae"): {"reconstruction": {"mse": (13.6890, 1.6320), "ssim_global": (0.9310, 0.0030),
                                                "psnr": (36.7872, 1.0056)},
                             "denoising": {"mse": (208.4608, 9.3928), "ssim_global": (0.7628, 0.0003),
                                           "psnr": (24.6527, 0.2001)}},
    ("cifar10", "conv-dae"): {"reconstruction": {"mse": (8.8810, 1.5311), "ssim_global": (0.9720, 0.0010),
                                                 "psnr": (38.6462, 1.2033)},
                              "denoising": {"mse": (16.7781, 5.1037), "ssim_global": (0.9110, 0.0020),
                                            "psnr": (36.4346, 0.2021)}},
    ("cifar10", "fc-ngc"): {"reconstruction": {"mse": (413.5140, 7.1), "ssim_global": (0.7230, 0.0003),
                                               "psnr": (22.8462, 0.04)},
                            "denoising": {"mse": (913.2587, 21.2), "ssim_global": (0.5308, 0.0025),
                                          "psnr": (19.0410, 0.1203)}},
    ("cifar10", "conv-ngc"): {"reconstruction": {"mse": (6.3668, 1.2522), "ssim_global": (0.9955, 0.0009),
                                                 "psnr": (41.0912, 0.0234)},
                              "denoising": {"mse": (183.8624, 9.4002), "ssim_global": (0.8603, 0.0007),
                                            "psnr": (25.9004, 0.2004)}},
    ("svhn", "conv-ae"): {"reconstruction": {"mse": (7.5043, 2.9351), "ssim_global": (0.8934, 0.0002),
                                             "psnr": (39.3777, 0.2)},
                          "denoising": {"mse": (154.6783, 25.7555), "ssim_global": (0.7490, 0.0030),
                                        "psnr": (26.2369, 0.3)}},
    ("svhn", "conv-dae"): {"reconstruction": {"mse": (2.7263, 1.9286), "ssim_global": (0.9510, 0.0002),
                                              "psnr": (43.7750, 0.3)},
                           "denoising": {"mse": (87.9926, 7.2091), "ssim_global": (0.9002, 0.0030),
                                         "psnr": (28.6864, 0.2)}},
    ("svhn", "fc-ngc"): {"reconstruction": {"mse": (67.393, 9.02), "ssim_global": (0.9436, 0.0028),
                                            "psnr": (33.2763, 1.08)},
                         "denoising": {"mse": (1116.764, 283.55), "ssim_global": (0.6704, 0.0904),
                                       "psnr": (19.8709, 2.08)}},
    ("svhn", "conv-ngc"): {"reconstruction": {"mse": (1.9500, 0.5609), "ssim_global": (0.9976, 0.0002),
                                              "psnr": (45.2305, 0.08)},
                           "denoising": {"mse": (97.2695, 3.5245), "ssim_global": (0.8650, 0.0007),
                                         "psnr": (28.2513, 0.16)}},
    # Table 2b (out-of-distribution reconstruction)
    ("svhn->cifar10", "conv-ae"): {"ood": {"ssim_global": (0.69, 0.0010), "psnr": (24.03, 0.26), "mse": (387.02, 7.82)}},
    ("svhn->cifar10", "conv-dae"): {"ood": {"ssim_global": (0.77, 0.0002), "psnr": (29.46, 0.37), "mse": (176.00, 5.09)}},
    ("svhn->cifar10", "conv-ngc"): {"ood": {"ssim_global": (0.98, 0.0006), "psnr": (35.03, 0.30), "mse": (26.80, 2.00)}},
    ("svhn->cinic10", "conv-ae"): {"ood": {"ssim_global": (0.70, 0.0050), "psnr": (23.74, 0.31), "mse": (275.09, 8.02)}},
    ("svhn->cinic10", "conv-dae"): {"ood": {"ssim_global": (0.79, 0.0020), "psnr": (27.10, 0.50), "mse": (127.90, 4.55)}},
    ("svhn->cinic10", "conv-ngc"): {"ood": {"ssim_global": (0.97, 0.0013), "psnr": (32.54, 0.20), "mse": (47.83, 2.50)}},
}
# SVHN is not here: these pairs stand in for the paper's, compared with the paper's pair named beside them
OOD_SUBSTITUTES = {"cifar10->cinic10": "svhn->cinic10", "color-mnist->cifar10": "svhn->cifar10"}

# Row sizes per scale. train: model -> (training images, epochs, batch); None = the whole training split;
# "dataset/model" overrides the model's size on that dataset (train_size).
# The paper gives no epoch counts: the "paper" epochs are ours; the training plots show whether they suffice.
# quick: batch 100 for the NGC models (not the paper's 500): more updates per image, the same step per
# update (results/STUDY.md); Conv-NGC gets 500 updates at the default Adam step. FC-NGC too, on 10,000 images:
# measured (bench/fc_convergence.py), 500 updates on 2,000 images still fell 1-7% over their last fifth, on
# 10,000 nearly flatten on CIFAR-10 (-0.4% to -1.2%: 3 of the row's 5 trials pass; at 8 epochs, 800 updates, all
# 5 do, -0.1% to -0.5%) but not on Color-MNIST (-8%), where 12 epochs (1,200 updates) pass in all 5 trials (the
# first 12 epochs of the committed 20-epoch trials: -0.5% at most; every trial's lowest validation MSE came by
# epoch 10, so 12 epochs keep the 20 epochs' models). At Adam 3e-3 half the updates pass but end about 5% worse
# (seed 0: 428.8 against 408.3 on Color-MNIST, 794.1 against 755.5 on CIFAR-10), so FC-NGC keeps the paper's 1e-3.
# The autoencoders train at Adam 3e-3 annealed to 0 over the run (cosine, ours; the paper: a constant 2e-5, at
# which they barely move in a quick run), in batches of 32, not 128, for 30 epochs (3,750 updates): measured
# (bench/ae_convergence.py, results/README.md), per second of one thread a batch of 32 gains as much per update
# as one of 128 at a quarter of the cost; a constant 3e-3 or 1e-2 oscillates, and annealed from 3e-3 the same
# 3,750 updates end lower than at a constant 1e-3 (CIFAR-10 seed 0: 1,097 vs 1,130; Color-MNIST 478 vs 648) and
# nearly flat on CIFAR-10 (-0.9% to -1.1%). On Color-MNIST they start from 1e-2 ("color-mnist/..." keys): seed
# 0 ends at 257 / 208 against 478 / 237 from 3e-3 in the same updates (CIFAR-10 Conv-AE from 1e-2 or 6e-3: 1,111
# and 1,103, no gain), still learning there (-1.7% / -3.7%; 60 epochs: 185 / 169, still -3.5% / -2.7%): those
# rows say "not converged". Conv-AE on CIFAR-10 trains 60 epochs (7,500 updates; "cifar10/conv-ae"): at 30 and 40
# it still fell 1.0-2.1%, at 60 seeds 0 and 1 pass (-0.9%) and the row 3 of 5 trials (1,005.6 against 1,104.5).
# The paper's 32-number code caps these networks near 19 dB on CIFAR-10.
# Sized to about 85 minutes on 2 cores with the cpu backend: the whole scale ran in 78.1 min with
# `--workers 2` on the idle development machine (2026-12-07), before the autoencoder changes since, which bring
# `convngc reproduce --list` to 84.
SCALES = {
    # smoke: checks that every row runs end to end in seconds (the numbers mean nothing)
    "smoke": {"n_test": 8, "n_val": 4, "n_tune": 4,
              "train": {m: (16, 2, 8) for m in ("conv-ngc", "fc-ngc", "conv-ae", "conv-dae", "res-conv-ngc")}},
    "quick": {"n_test": 200, "n_val": 100, "n_tune": 100,
              "train": {"conv-ngc": (10000, 5, 100), "fc-ngc": (10000, 8, 100), "conv-ae": (4000, 30, 32),
                        "conv-dae": (4000, 30, 32), "res-conv-ngc": (1000, 4, 50),
                        "color-mnist/fc-ngc": (10000, 12, 100), "cifar10/conv-ae": (4000, 60, 32)},
              "lr": {"conv-ae": 3e-3, "conv-dae": 3e-3, "color-mnist/conv-ae": 1e-2, "color-mnist/conv-dae": 1e-2},
              "decay": {"conv-ae": "cosine", "conv-dae": "cosine"}},
    "paper": {"n_test": None, "n_val": 5000, "n_tune": 500,
              "train": {"conv-ngc": (None, 4, 100), "fc-ngc": (None, 20, 500), "conv-ae": (None, 30, 32),
                        "conv-dae": (None, 30, 32), "res-conv-ngc": (None, 20, 500),
                        "color-mnist/conv-ae": (None, 60, 32), "color-mnist/conv-dae": (None, 60, 32)},
              # Conv-NGC: the shipped models' recipe (results/cifar10-seeds), batch 100 x 4 epochs = 1,800 updates,
              # as many as 20 epochs of the paper's batch 500; at batch 500 with the paper's fixed beta 0.1 it had
              # not converged after 20 epochs (val MSE -21.9% over the last 20%)
              # the autoencoders: the quick scale's optimiser on all images, not the paper's Adam 2e-5 x 100 epochs
              # at batch 128, which had not converged here (val MSE -3.5% / -5.3% over its last 20 epochs); on
              # Color-MNIST 60 epochs: at 30 their last fifth still fell 1.6% / 2.3%; at 60 Conv-AE passes (-0.9%,
              # test MSE 160.4 -> 157.9) and Conv-DAE ends where 30 epochs did (100.1 -> 100.2; still -1.2%)
              "lr": {"conv-ae": 3e-3, "conv-dae": 3e-3}, "decay": {"conv-ae": "cosine", "conv-dae": "cosine"}},
}
# Time estimates (--list, and the line a run starts with) come from measured rates: the committed runs' raw JSON
# (MEASURED: each job's job_seconds and every trial's train_seconds and eval_seconds) gives per-image seconds for
# each model, at the batch size it ran (a job's own when that job was measured). COST is the fallback for an
# install without the committed results: seconds per training image-epoch (learn step with its share of the
# batch; for Conv-NGC also its share of the beta schedule's checks and of the denoising tuning) and per evaluated
# image (one settle / forward; a classical denoiser: per tuning image over the whole grid, per test image), at the
# quick scale's batch sizes, the mean of the committed quick jobs (tests/app/test_reproduce.py holds them to the
# committed measurements). Those ran on the idle 2-core development machine, two jobs at a time on one thread
# each (`--workers 2`, the whole quick scale in 78.1 min, 156 min of jobs: docs/cluster.md), so they are
# one-thread rates, and `spread` hands the parts to the workers. A serial run gives the Conv-NGC and residual jobs
# both cores and is faster there than the sum (the scale as it was on 2026-12-06, serially: 95.8 min against the
# sum's 121). Residual Conv-NGC
# (ngc_cpu.residual) costs about 10x Conv-NGC per settling step (bench/residual_bench.py: 12x the useful FLOPs
# at the same GFLOP/s; the NumPy reference, --backend numpy, is about 16x slower still).
MEASURED = (QUICK, PAPER_SCALE)
COST = {"conv-ngc": (0.0044, 0.0072), "fc-ngc": (0.0033, 0.0036), "conv-ae": (0.0011, 0.00087),
        "conv-dae": (0.0013, 0.00096), "res-conv-ngc": (0.028, 0.022), "tv": (0.025, 0.0054), "nlm": (0.017, 0.0033),
        "bm3d": (0.13, 0.026)}
# images of each dataset's splits when a scale takes them all (train: the training set less 5,000 for validation)
FULL = {"cifar10": (45000, 10000), "color-mnist": (55000, 10000), "svhn": (68257, 26032), "cinic10": (0, 1532)}


def _per_dataset(table, model, dataset):
    """table["dataset/model"] where the table names one, else table[model] (KeyError if neither)."""
    key = "%s/%s" % (dataset, model)
    return table[key] if key in table else table[model]


def train_size(scale_cfg, model, dataset):
    """(training images, epochs, batch) of a trained model on a dataset at a scale: "dataset/model" if the scale
    names one, else the model's."""
    return _per_dataset(scale_cfg["train"], model, dataset)


@dataclasses.dataclass(frozen=True)
class Row:
    id: str                 # "cifar10/conv-ngc", "cifar10->cinic10/conv-ngc"
    table: str              # the results file it belongs to
    model: str
    dataset: str            # the dataset the model is trained (or tuned) on
    test_dataset: str
    tasks: tuple
    needs: tuple = ()       # datasets and extras that must be present
    paper_key: str = ""     # where its paper numbers are (the substituted pair for substitutes)
    substitute: bool = False


def all_rows():
    """Every row the runner knows, in table order."""
    rows = []
    for ds, table in (("color-mnist", "table1-color-mnist"), ("cifar10", "table1-2a-cifar10"),
                      ("svhn", "table1-2a-svhn")):
        for m in ("conv-ae", "conv-dae", "fc-ngc", "conv-ngc"):
            rows.append(Row("%s/%s" % (ds, m), table, m, ds, ds, ("reconstruction", "denoising"), (ds,), ds))
        for m in CLASSICAL:
            rows.append(Row("%s/%s" % (ds, m), table, m, ds, ds, ("denoising",), (ds,), ds))
    for pair in ("svhn->cifar10", "svhn->cinic10", "cifar10->cinic10", "color-mnist->cifar10"):
        src, dst = pair.split("->")
        for m in ("conv-ae", "conv-dae", "conv-ngc"):
            sub = pair in OOD_SUBSTITUTES
            rows.append(Row("%s/%s" % (pair, m), "table2b-ood", m, src, dst, ("ood",), (src, dst),
                            OOD_SUBSTITUTES.get(pair, pair), sub))
    rows.append(Row("cifar10/res-conv-ngc", "extra-residual-cifar10", "res-conv-ngc", "cifar10", "cifar10",
                    ("reconstruction", "denoising"), ("cifar10",), ""))
    return rows


def _have_dataset(name, data_dir):
    """Its files are there (looked up, not read: --list stays instant; a corrupt file fails the run, naming it)."""
    return data.dataset_available(name, data_dir)


def _have_module(name):
    """Installed (found, not imported: PyTorch takes seconds to import)."""
    import importlib.util
    return importlib.util.find_spec(name) is not None


def select_rows(patterns, data_dir, log=print):
    """The rows to run: those matching --rows (default: all), minus those whose data or
    extras are missing (one line each says why), minus the substitutes when SVHN is present."""
    rows = all_rows()
    if patterns:
        unknown = [p for p in patterns if not any(fnmatch.fnmatch(r.id, p) for r in rows)]
        if unknown:
            raise SystemExit("error: --rows %s matches no row; `convngc reproduce --list` shows them"
                             % ", ".join(unknown))
        rows = [r for r in rows if any(fnmatch.fnmatch(r.id, p) for p in patterns)]
    have = {}
    svhn = _have_dataset("svhn", data_dir)
    kept, skipped = [], []
    for r in rows:
        why = None
        for ds in r.needs:
            if ds not in have:
                have[ds] = _have_dataset(ds, data_dir)
            if not have[ds]:
                why = "no %s data (see data/README.md; `convngc download %s`)" % (DATASET_TITLES.get(ds, ds), ds)
                break
        if why is None and r.substitute and svhn:
            why = "SVHN is present, so the paper's own SVHN pair runs instead of this substitute"
        if why is None and r.model in ("conv-ae", "conv-dae") and not _have_module("torch"):
            why = "PyTorch is not installed (pip install .[baselines]; see README for the CPU-only wheel)"
        if why is None and r.model == "bm3d" and not _have_module("bm3d"):
            why = "the bm3d package is not installed (pip install .[baselines] or pip install bm3d)"
        if why:
            log("skipping %s: %s" % (r.id, why))
            skipped.append((r, why))
        else:
            kept.append(r)
    return kept, skipped


# ------------------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------------------
def load(name, split, limit, data_dir):
    """Float NCHW images in [0, 1]; the CINIC-10 sample has no official test split: all of it is used."""
    if name == "cinic10" and split == "test":
        split = "all"
    x, _ = data.load_dataset(name, split, data_dir=data_dir, seed=0, limit=limit)
    return data.to_model(x, channels=3)


def noisy_inputs(x, seed):
    """x + N(0, 0.1), not clipped: the very draw train.run_task makes for trial `seed` (tested)."""
    rng = np.random.default_rng(seed)
    return (x + rng.normal(0.0, train.NOISE_STD, size=x.shape)).astype(x.dtype)


# ------------------------------------------------------------------------------------------------------------
# models: fit(train, val) -> history with "val_mse"; outputs(x, task, seed) -> (output, model input)
# ------------------------------------------------------------------------------------------------------------
# The Conv-NGC rows train by the shipped models' recipe (docs/training.md, models/*/card.json): Adam 3e-3, the
# beta schedule (convngc/schedule.py: beta steps down before the settle's stability edge, a blow-up is taken
# back), the best validation epoch or restore point kept, and the precision reading of denoising (pi0, T and
# momentum) tuned on the scale's n_tune validation images with the trial's seed: what `convngc train` does.
CONV_NGC_LR = 3e-3


def conv_ngc_config():
    """The Conv-NGC rows' model: the documented default Config() at the recipe's Adam step (tests may patch this)."""
    return dataclasses.replace(Config(), lr=CONV_NGC_LR)


class _ConvNGCRow:
    def __init__(self, seed, backend, n_tune=None):
        self.model = ConvNGC(conv_ngc_config(), backend=backend, seed=seed)
        self.seed, self.n_tune = seed, n_tune

    def fit(self, tx, vx, epochs, batch, log, state_path=None):
        """`convngc train`'s path in a run folder: train.fit with the beta schedule (best.npz: the best epoch, or
        the restore point when it validates lower), then the denoising reading tuned into best.npz; the row's
        model is best.npz. The history gains "tuning": the chosen pi0, T, momentum and their MSE. The run folder
        is `state_path` when given (partial.py: a folder whose checkpoint.npz of this training is resumed, as
        `convngc train --resume` does), else a scratch folder."""
        import tempfile
        from .. import checkpoint, schedule, tune
        from . import partial
        cfg, backend = self.model.cfg, self.model.backend.name
        with contextlib.ExitStack() as stack:
            run_dir = state_path
            if run_dir is not None:
                try:
                    os.makedirs(run_dir, exist_ok=True)
                except OSError:                 # a worker that cannot reach the driver's folder: not resumable
                    run_dir = state_path = None
            if run_dir is None:
                run_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="convngc-row-"))
            opts = schedule.ScheduleOptions()
            want = partial.key("conv-ngc", self.seed, epochs, batch, tx, cfg=cfg.to_dict(), backend=backend,
                               n_val=len(vx), n_tune=self.n_tune, schedule=dataclasses.asdict(opts))
            sched = schedule.BetaSchedule(opts, cfg, vx if len(vx) else tx, log=lambda s: log("  " + s))
            start, history, ck = 0, None, os.path.join(run_dir, "checkpoint.npz")
            self.resumed_from = 0
            if state_path is not None and partial.load(os.path.join(run_dir, "key.pkl"), want) and os.path.isfile(ck):
                self.model, meta = train.load_model(ck, backend=backend)
                start, history = meta["epoch"], meta["history"]
                sched.load_state(meta["schedule"], checkpoint.load_extra(ck, "restore"))
                self.resumed_from = start
                log("  resumed after epoch %d/%d (%s)" % (start, epochs, run_dir))
            elif state_path is not None:                # another training's folder, or none yet: start afresh
                import shutil
                shutil.rmtree(run_dir)
                os.makedirs(run_dir)
                partial.save(os.path.join(run_dir, "key.pkl"), want, {})
            hist = train.fit(self.model, tx, vx, epochs, batch, run_dir=run_dir, progress=False, seed=self.seed,
                             log=lambda s: log("  " + s), schedule=sched, history=history, start_epoch=start)
            if start >= epochs:                 # stopped after its last checkpoint: keep the restore point again
                train.keep_the_restore_point(run_dir, self.model, vx, 100, self.seed, hist, sched, None,
                                             lambda s: log("  " + s))
            best = os.path.join(run_dir, "best.npz")
            if len(vx) and os.path.isfile(best):
                n = len(vx) if self.n_tune is None else min(self.n_tune, len(vx))
                choice = tune.tune_checkpoint(best, vx[:n], self.seed, backend, log=lambda s: log("  " + s))
                hist["tuning"] = {k: choice[k] for k in ("pi0", "T", "momentum", "mse", "psnr") if k in choice}
                cfg, params, _, _ = checkpoint.load(best)
                self.model = ConvNGC(cfg, backend=backend, seed=self.seed, dtype=self.model.dtype, params=params)
        return hist

    def outputs(self, x, task, seed):
        out, inp, _ = train.run_task(self.model, x, "denoising" if task == "denoising" else "reconstruction",
                                     batch_size=100, seed=seed)
        return out, inp


# The baselines end with the weights of their epoch with the lowest validation MSE, as the Conv-NGC recipe keeps its
# best epoch or restore point: every learned row is selected on the same validation images the same way (rows
# recorded before this say so by the absence of "keep_best" in their setup: the last epoch).
KEEP_BEST = True


class _GenericRow:
    def __init__(self, model):
        self.model = model

    def fit(self, tx, vx, epochs, batch, log, state_path=None):
        hist = self.model.fit(tx, vx, epochs, batch, log=log, state_path=state_path, keep_best=KEEP_BEST)
        self.resumed_from = self.model.resumed_from
        return hist

    def outputs(self, x, task, seed):
        if task == "denoising":                 # z^0 clamped to the noisy image (Algorithm 1): these models have no
            inp, clamp = noisy_inputs(x, seed), "always"        # precision weight for the Conv-NGC rows' reading
        else:
            inp, clamp = x, "always"
        if hasattr(self.model, "_settle"):
            return self.model.output(inp, clamp=clamp, seed=seed), inp
        return self.model.output(inp), inp                  # autoencoders: the network's output


# The numbers of the NumPy-reference rows (FC-NGC, residual Conv-NGC) and the PyTorch rows depend on how many
# threads share their sums (measured: FC-NGC with 1 and 2 OpenBLAS threads, Conv-DAE with 1, 2 and 4 PyTorch
# threads differ from the 7th digit on), so every part of a job runs BLAS and PyTorch on JOB_THREADS threads, in
# whichever process runs it: a row's numbers then do not depend on how many parts run at once, or where. One
# thread: the parts fill the cores instead. Conv-NGC's cpu backend computes every image the same way whatever its
# thread count (ngc_cpu/threads.py) and keeps its own.
JOB_THREADS = 1
THREADED = ("fc-ngc", "res-conv-ngc", "conv-ae", "conv-dae")


# Residual Conv-NGC at the paper's beta 0.1 diverges here from the first epoch (its settle's energy rises over
# T = 60 from random filters; measured on 1,000 CIFAR-10 images, batch 50: training energy 1e23 per image in epoch
# 2). At beta 0.025 seed 0 learns (validation MSE 9,898 -> 4,517 in 3 epochs) though its training energy still
# rises epoch after epoch, and four of the quick row's five trials diverge within 80 updates; Adam 3e-4 keeps the
# energy falling but learns 2.5x slower (11,400 after 2 epochs). It has no beta schedule: the row is a measured
# failure, not a trained model, and its setup cell says so (results/README.md). Its settle is unstable before any
# learning: from fresh filters the energy turns up after 8 steps at beta 0.1, 50 at 0.025, and falls for 216 at 0.01
# (bench/residual_settle.py): Eq. 8's error path skips Pool, ReLU and the skip, so a step is not a descent.
# The exact gradient (ResidualConfig(feedback="gradient"), not the paper's) descends from fresh filters but blows
# up as it learns at 0.025 and 0.01 too (bench/residual_gradient.py, results/README.md); with descent=True (a
# settle that cannot climb) nothing blows up, but it does not learn in the row's 80 updates (validation MSE 6,796
# -> 11,367), and Adam 3e-3 blows up the ancestral pass instead (results/residual-descent.jsonl): the row keeps Eq. 8.
RESIDUAL_BETA = 0.025


def residual_config():
    from ngc_ref import residual
    return residual.ResidualConfig(base=dataclasses.replace(Config(), beta=RESIDUAL_BETA))


def optimiser(scale_cfg, model, dataset=None):
    """The scale's Adam step ("lr") and its schedule ("decay") for a model on a dataset, where the scale names
    them: "dataset/model" if the scale names one, else the model's (as train_size)."""
    out = {}
    for k in ("lr", "decay"):
        try:
            out[k] = _per_dataset(scale_cfg.get(k, {}), model, dataset)
        except KeyError:                    # the scale names none: the model's own default
            pass
    return out


def make_model(name, seed, backend, lr=None, n_tune=None, decay=None):
    if name == "conv-ngc":
        return _ConvNGCRow(seed, backend, n_tune)
    from . import baselines
    if name == "fc-ngc":
        from ngc_ref import fc
        return _GenericRow(baselines.FCNGCModel(None if lr is None else fc.FCConfig(lr=lr), seed=seed))
    if name == "res-conv-ngc":
        return _GenericRow(baselines.ResidualConvNGC(residual_config(), seed=seed,
                                                     backend=baselines.residual_backend(backend)))
    if name in ("conv-ae", "conv-dae"):
        import torch
        from .autoencoder import AutoEncoderModel
        torch.set_num_threads(JOB_THREADS)
        return _GenericRow(AutoEncoderModel(denoising=(name == "conv-dae"), seed=seed, decay=decay,
                                            **({} if lr is None else {"lr": lr})))
    raise ValueError("unknown model %r" % name)


# ------------------------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------------------------
def row_setup(row, scale_cfg, trials, backend):
    """The row's config as recorded in its JSON: sizes, seeds, and the model's configuration."""
    s = {"n_test": n_test_for(scale_cfg, row.model), "trials": trials, "seeds": list(range(trials)),
         "noise_std": train.NOISE_STD}
    if row.model in TRAINED:
        n_train, epochs, batch = train_size(scale_cfg, row.model, row.dataset)
        s.update(n_train=n_train, epochs=epochs, batch=batch, n_val=scale_cfg["n_val"])
        s.update(optimiser(scale_cfg, row.model, row.dataset))
        if row.model != "conv-ngc" and KEEP_BEST:
            s["keep_best"] = True
    else:
        s.update(n_tune=scale_cfg["n_tune"])
    if row.model == "conv-ngc":
        s.update(backend=backend, config=conv_ngc_config().to_dict(), lr=CONV_NGC_LR, n_tune=scale_cfg["n_tune"],
                 recipe="beta schedule; best epoch or restore point; denoising pi0 / T / momentum tuned on "
                        "n_tune validation images")
    elif row.model == "res-conv-ngc":
        from .baselines import residual_backend
        s.update(backend=residual_backend(backend),          # cpu (ngc_cpu.residual) unless --backend numpy
                 config=residual_config().base.to_dict())
    elif row.model == "fc-ngc":
        s.update(backend="numpy (reference; no kernel)")
    if row.model in THREADED:
        s.update(threads=JOB_THREADS)
    return s


# The convergence criterion of the learned rows (issue 18): a trial has converged when its validation
# reconstruction MSE improved by less than CONVERGED_CHANGE (1 %) over the last CONVERGED_WINDOW (20 %) of its
# updates. The curve is the per-epoch validation MSE (equal updates per epoch, so the epochs mark the updates);
# the window starts at 80 % of the updates, between two epochs' points if need be (linear interpolation). Best
# so far against best so far: the lowest MSE up to the window's start against the lowest at the end, so that a
# curve that rises again at the end (overfitting, noise) counts as flat rather than as improving.
CONVERGED_CHANGE = 0.01
CONVERGED_WINDOW = 0.2
CONVERGENCE_CRITERION = ("validation MSE improved by less than %g%% over the last %g%% of the updates (lowest "
                         "MSE up to the window's start against the lowest at the end)"
                         % (100 * CONVERGED_CHANGE, 100 * CONVERGED_WINDOW))


def converged(val_mse, change=CONVERGED_CHANGE, window=CONVERGED_WINDOW):
    """Whether a per-epoch validation MSE curve has flattened: {"converged": True / False, or None when the
    curve cannot tell (fewer points than the window needs, or a non-finite value), "change": the relative
    change of the best MSE over the last `window` of the updates (negative: it improved), "criterion"}."""
    v = np.asarray(val_mse, dtype=float)
    out = {"converged": None, "change": None, "criterion": CONVERGENCE_CRITERION}
    n = len(v)
    start = (1.0 - window) * n              # in epochs: point k (1-based) is the end of epoch k
    if n < 2 or start < 1.0 or not np.all(np.isfinite(v)):
        return out
    k = int(np.floor(start))                # points 1..k lie before the window's start
    at_start = v[k - 1] if start == k else v[k - 1] + (start - k) * (v[k] - v[k - 1])
    before = min(float(np.min(v[:k])), float(at_start))
    rel = (float(np.min(v)) - before) / before
    out.update(converged=bool(rel > -change), change=rel)
    return out


def n_test_for(scale_cfg, model_name):
    """Test images per dataset for a model (the scale's, or a smaller cap for a very slow model)."""
    return scale_cfg.get("n_test_model", {}).get(model_name, scale_cfg["n_test"])


def _metrics(out, x):
    return {k: float(v) for k, v in metrics.evaluate_metrics(out, x).items()}


def _summary(trials, task):
    return {k: {"mean": m, "std": s} for k, (m, s) in metrics.mean_std([t[task] for t in trials]).items()}


def run_part(model_name, dataset, rows, scale_cfg, seeds, trials, backend, data_dir, partial_dir=None, log=print):
    """_run_part with BLAS (and OpenMP) on JOB_THREADS threads."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(JOB_THREADS):
        return _run_part(model_name, dataset, rows, scale_cfg, seeds, trials, backend, data_dir, partial_dir, log)


def partial_path(partial_dir, model_name, dataset, seed):
    """Where trial `seed` of a trained model keeps its training between epochs (partial.py), or None."""
    if partial_dir is None:
        return None
    name = "%s__%s__seed%d" % (model_name, dataset.replace("->", "-to-"), seed)
    return os.path.join(partial_dir, name if model_name == "conv-ngc" else name + ".pkl")   # conv-ngc: a run folder


def _run_part(model_name, dataset, rows, scale_cfg, seeds, trials, backend, data_dir, partial_dir, log):
    """One part of a job (one model on one dataset, serving every row that uses it), the unit the runs fan out:
    one trial of a trained model, or a classical denoiser's tuning with all its trials. It writes nothing and
    returns what the driver writes: {"trials": {row id: [its trial records, one per seed]}, "histories": {seed:
    training history}, "tuning": the classical parameter chosen, "figures": {file name: (rows of images,
    viz.save_grid's options)}, "seconds": its wall time, with the epochs a resumed trial ran in earlier
    processes}. Trial k depends on k alone (its seeds, its data), so a part gives the same numbers in whichever
    process or machine runs it."""
    t_part = time.time()
    n_test = n_test_for(scale_cfg, model_name)
    test_x = {r.test_dataset: load(r.test_dataset, "test", n_test, data_dir) for r in rows}
    part = {"trials": {r.id: [] for r in rows}, "histories": {}, "figures": {}}
    if model_name in CLASSICAL:
        from .baselines import ClassicalDenoiser
        den = ClassicalDenoiser(model_name)
        log("== %s on %s (%s): tuned on %d validation images, %s ==" % (
            NAMES[model_name], DATASET_TITLES[dataset], ", ".join(r.id for r in rows), scale_cfg["n_tune"],
            _trials(len(seeds))))
        vx = load(dataset, "val", scale_cfg["n_tune"], data_dir)
        t0 = time.time()
        part["tuning"] = den.tune(vx, noisy_inputs(vx, 10 ** 6), log=log)     # a noise draw no test trial uses
        part["tuning"]["seconds"] = time.time() - t0
        for k in seeds:
            for r in rows:
                x = test_x[r.test_dataset]
                t0 = time.time()
                out = den.output(noisy_inputs(x, k))
                part["trials"][r.id].append({"seed": k, "denoising": _metrics(out, x), "eval_seconds": time.time() - t0})
            log("  trial %d/%d: denoising MSE %.2f" % (k + 1, trials, part["trials"][rows[0].id][-1]["denoising"]["mse"]))
        part["seconds"] = time.time() - t_part
        return part
    n_train, epochs, batch = train_size(scale_cfg, model_name, dataset)
    tx = load(dataset, "train", n_train, data_dir)
    vx = load(dataset, "val", scale_cfg["n_val"], data_dir)
    for k in seeds:
        log("%s on %s (%s), trial %d/%d: %d training images x %s, batch %d" % (
            NAMES[model_name], DATASET_TITLES[dataset], ", ".join(r.id for r in rows), k + 1, trials, len(tx),
            _epochs(epochs), batch))
        m = make_model(model_name, k, backend, n_tune=scale_cfg["n_tune"],
                       **optimiser(scale_cfg, model_name, dataset))
        t0 = time.time()
        hist = m.fit(tx, vx, epochs, batch, log, state_path=partial_path(partial_dir, model_name, dataset, k))
        train_s = time.time() - t0
        if m.resumed_from:                      # the epochs before the resume ran in an earlier process
            earlier = float(sum(hist["epoch_seconds"][:m.resumed_from]))
            train_s += earlier
            t_part -= earlier                   # and count in the part's (so the job's) seconds too
        part["histories"][k] = hist
        conv = converged(hist["val_mse"])
        log("  %s: %s" % ("converged" if conv["converged"] else "not converged" if conv["converged"] is False
                          else "convergence cannot be told from %d epochs" % len(hist["val_mse"]),
                          "-" if conv["change"] is None else "validation MSE %+.1f%% over the last %g%% of the updates"
                          % (100 * conv["change"], 100 * CONVERGED_WINDOW)))
        for r in rows:
            x = test_x[r.test_dataset]
            rec = {"seed": k, "train_seconds": train_s, "history": hist, "convergence": conv}
            t0 = time.time()
            for task in r.tasks:
                out, inp = m.outputs(x, task, k)
                rec[task] = _metrics(out, x)
                if k == 0 and task == "denoising" and model_name == "conv-ngc":
                    part["figures"]["figure3-%s.png" % dataset] = (figure3_rows(x, inp, out), {"n": 6})
            rec["eval_seconds"] = time.time() - t0
            part["trials"][r.id].append(rec)
            log("  %s: %s" % (r.id, "; ".join("%s MSE %.2f, SSIM (Eq. 5) %.4f, PSNR %.2f"
                                               % (t, rec[t]["mse"], rec[t]["ssim_global"], rec[t]["psnr"])
                                               for t in r.tasks)))
        if k == 0 and model_name == "conv-ngc" and dataset in test_x:      # not when only OOD rows run
            part["figures"]["figure4-%s.png" % dataset] = (figure4_rows(m.model, test_x[dataset][:1]),
                                                           {"n": FIGURE4_MAPS, "upscale": 3})
    part["seconds"] = time.time() - t_part
    return part


def raw_path(out_dir, row_id):
    return os.path.join(out_dir, "raw", row_id.replace("->", "-to-").replace("/", "__") + ".json")


def job_parts(rows, scale_cfg, trials, backend, data_dir, partial_dir=None):
    """The rows grouped into jobs (a trained model serves every row that uses it) -> {job: its rows}, and the
    jobs' parts as fanout.fan_out takes them: [(job, run_part's arguments)], a trained model's trials one by
    one, a classical denoiser in one part (its trials reuse its tuning and take seconds)."""
    jobs = {}
    for r in rows:
        jobs.setdefault((r.model, r.dataset), []).append(r)
    parts = [((m, ds), (m, ds, tuple(jrows), scale_cfg, seeds, trials, backend, data_dir, partial_dir))
             for (m, ds), jrows in jobs.items()
             for seeds in ([list(range(trials))] if m in CLASSICAL else [[k] for k in range(trials)])]
    return jobs, parts


def run(rows, scale, trials, backend, data_dir, out_dir, log=print, workers=1, address=None):
    """Run the rows, their jobs' parts fanned out (fanout.fan_out: one after another in this process, or as Ray
    tasks), and write each job's rows, figures and tables here, in the driver, once its last part is in. A part
    that fails is reported by row and the other jobs go on. Returns ({row id: raw record written}, {job: the
    exception of its failed part})."""
    scale_cfg = SCALES[scale]
    os.makedirs(os.path.join(out_dir, "raw"), exist_ok=True)
    partial_dir = os.path.join(os.path.abspath(out_dir), "partial")
    jobs, parts = job_parts(rows, scale_cfg, trials, backend, data_dir, partial_dir)
    need = {job: sum(1 for j, _ in parts if j == job) for job in jobs}
    est = estimate_seconds(rows, scale, trials, per_job=True)          # longest parts first, as `spread` assumes:
    parts.sort(key=lambda p: -est[p[0]][0] / need[p[0]])                # the workers' last parts are short ones
    got, failed, written = {job: [] for job in jobs}, {}, {}
    with contextlib.closing(fanout.fan_out(run_part, parts, workers, address, log)) as finished:
        for job, part, error in finished:
            if error is not None:
                failed.setdefault(job, error)
                log("error: %s failed, the other rows go on: %s: %s" % (", ".join(r.id for r in jobs[job]),
                                                                        type(error).__name__, error))
            elif job not in failed:
                got[job].append(part)
                if len(got[job]) == need[job]:
                    written.update(write_job(job, jobs[job], got[job], scale, trials, backend, out_dir))
                    _remove_partial(partial_dir, job, trials)
    return written, failed


def _remove_partial(partial_dir, job, trials):
    """A written job's training states (partial.py) are no longer needed; the folder goes when it is empty."""
    import shutil
    model_name, dataset = job
    for k in range(trials):
        p = partial_path(partial_dir, model_name, dataset, k)
        if p is not None and os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
        elif p is not None and os.path.exists(p):
            os.remove(p)
    with contextlib.suppress(OSError):
        os.rmdir(partial_dir)


def write_job(job, rows, parts, scale, trials, backend, out_dir):
    """A finished job's rows: raw/<row>.json (atomically; the trials in seed order), its figures and training
    plot, then every table rebuilt from raw/. job_seconds: the wall time of its parts, added up."""
    model_name, dataset = job
    scale_cfg = SCALES[scale]
    for p in parts:
        for name, (grid, options) in p["figures"].items():
            viz.save_grid(os.path.join(out_dir, name), grid, **options)
    histories = dict(sorted((k, h) for p in parts for k, h in p["histories"].items()))
    if model_name in TRAINED:
        plot_val_curves(os.path.join(out_dir, "training-%s-%s.png" % (dataset, model_name)),
                        {"trial %d" % k: h["val_mse"] for k, h in histories.items()},
                        "%s on %s: validation reconstruction MSE" % (NAMES[model_name], DATASET_TITLES[dataset]))
    written = {}
    for r in rows:
        done = sorted((t for p in parts for t in p["trials"][r.id]), key=lambda t: t["seed"])
        rec = {"row": dataclasses.asdict(r), "scale": scale, "setup": row_setup(r, scale_cfg, trials, backend),
               "trials": done, "summary": {t: _summary(done, t) for t in r.tasks},
               "job_seconds": sum(p["seconds"] for p in parts)}
        if "tuning" in parts[0]:
            rec["tuning"] = parts[0]["tuning"]
        write_json(raw_path(out_dir, r.id), rec)
        written[r.id] = rec
    write_tables(out_dir)
    return written


# ------------------------------------------------------------------------------------------------------------
# tables and figures
# ------------------------------------------------------------------------------------------------------------
def _fmt(v, metric):
    return "%.*f" % (DECIMALS[metric], v)


def _cell(summary, metric, n):
    """mean ± std over the n trials (the mean alone for one trial)."""
    if summary is None or metric not in summary:
        return "-"
    return metrics.format_mean_std(summary[metric]["mean"], summary[metric]["std"], n, DECIMALS[metric])


def _psnr_of_mse_cell(rec, task):
    """PSNR of each trial's MSE (over all channels, pixels and images at once), mean ± std over trials."""
    vals = [metrics.psnr_of_mse(t[task]["mse"]) for t in rec["trials"]]
    return metrics.format_mean_std(np.mean(vals), np.std(vals), len(vals), DECIMALS["psnr"])


def _paper_cell(key, model, task, metric):
    v = PAPER.get((key, model), {}).get(task, {}).get(metric)
    return "-" if v is None else "%g ± %g" % v                 # as printed in the paper (trailing zeros dropped)


def _setup_cell(rec):
    s = rec["setup"]
    if "epochs" in s:
        n = "all" if s["n_train"] is None else "{:,}".format(s["n_train"])
        how = ""
        if "lr" in s:
            how += ", Adam %s" % _sci(s["lr"]) + (" annealed (%s)" % s["decay"] if "decay" in s else "")
        if s.get("keep_best"):
            how += ", best epoch on val"
        if "recipe" in s:
            how += ", beta schedule, denoising tuned on %d val imgs" % s["n_tune"]
        elif "config" in s:
            how += ", beta %g" % s["config"]["beta"]
        return "%s: %s train imgs x %d ep, batch %d%s; %s; %s" % (
            rec["scale"], n, s["epochs"], s["batch"], how, _trials(s["trials"]), convergence_note(rec)) + \
            diverging_note(rec)
    return "%s: tuned on %d val imgs; %s" % (rec["scale"], s["n_tune"], _trials(s["trials"]))


def _sci(x):
    """1e-3, 2e-5, 1.5e-3: a step as the docs write it."""
    mant, exp = ("%e" % x).split("e")
    return "%se%d" % (mant.rstrip("0").rstrip("."), int(exp))


def trial_convergence(trial):
    """A trained trial's convergence record: the one its run wrote, or for a record written before runs wrote
    one (issue 18), the same criterion applied to its recorded validation curve; None without either."""
    if "convergence" in trial:
        return trial["convergence"]
    if "val_mse" in (trial.get("history") or {}):
        return converged(trial["history"]["val_mse"])
    return None


def convergence_note(rec):
    """What the setup cell of a trained row says about convergence, in the row itself: "converged", "**not
    converged**" (with how many trials and by how much their validation MSE still fell over the last 20 % of
    the updates), or that the record cannot tell."""
    convs = [trial_convergence(t) for t in rec["trials"]]
    if not convs or any(c is None for c in convs):
        return "**convergence not recorded**"
    if any(c["converged"] is None for c in convs):
        return "**convergence unknown** (too few epochs to tell)"
    window = "over the last %g%% of updates" % (100 * CONVERGED_WINDOW)
    fell = [abs(100 * c["change"]) for c in convs]      # change <= 0: the best MSE never rises (abs: no "-0.0%")
    if all(c["converged"] for c in convs):
        return "converged (val MSE fell at most %.1f%% %s)" % (max(fell), window)
    bad = [f for c, f in zip(convs, fell) if not c["converged"]]
    who = ("" if len(bad) == len(convs) else " in %d of %d trials" % (len(bad), len(convs)))
    return "**not converged**%s (val MSE fell %.1f%% %s%s)" % (
        who, float(np.mean(bad)), window, "; mean of %d trials" % len(bad) if len(bad) > 1 else "")


# A trial whose last epoch's training energy is more than DIVERGING times its lowest epoch's is diverging: its
# validation curve can look flat (the convergence criterion keeps the best MSE), while the row evaluates the last
# epoch's model, so the setup cell says it beside the convergence. Not for a trial trained with the beta schedule
# (a "schedule" in its history): the schedule takes a blow-up back and the row evaluates its best state.
DIVERGING = 2.0


def diverging_note(rec):
    """"; **diverging** ..." when a trial's training energy ended above DIVERGING x its lowest, else ""."""
    ratios = []
    for t in rec["trials"]:
        if "schedule" in (t.get("history") or {}):
            continue
        e = [v for v in (t.get("history") or {}).get("train_energy", []) if v is not None and np.isfinite(v)]
        if len(e) >= 2 and min(e) > 0:
            ratios.append(e[-1] / min(e))
    bad = [r for r in ratios if r > DIVERGING]
    if not bad:
        return ""
    who = "" if len(bad) == len(rec["trials"]) else " in %d of %d trials" % (len(bad), len(rec["trials"]))
    return "; **diverging**%s (last epoch's training energy %.0fx its lowest): not a trained model" % (
        who, max(bad))


def _trials(k):
    return "%d trial" % k if k == 1 else "%d trials" % k


def _epochs(k):
    return "%d epoch" % k if k == 1 else "%d epochs" % k


def read_raw(out_dir):
    recs = []
    folder = os.path.join(out_dir, "raw")
    for f in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if f.endswith(".json"):
            with open_regular(os.path.join(folder, f), "r") as fh:
                recs.append(json.load(fh))
    return recs


HEADER = """Generated by `convngc reproduce`; do not edit. Ours: mean ± std over trials (population std; the
mean alone for one trial); trial k trains from seed k and draws its own noise (classical rows: the noise only).
Paper: mean ± std over its five trials, as printed. Metrics on outputs clipped to [0, 1] and scaled to [0, 255]
(convngc.metrics): MSE (Eq. 4), SSIM (Eq. 5) with whole-image statistics (the paper's SSIM column is listed
beside it), SSIM (windowed) = Gaussian sigma 1.5 windows (Wang et al. 2004). PSNR (Eq. 6), the paper's
convention: per image and per channel, each value capped at 100 dB, then averaged. PSNR of the MSE:
10 log10(255^2 / MSE) of each trial's MSE, over all channels, pixels and images at once; it ranks the rows as
the MSE does. Denoising inputs are x + N(0, 0.1) on the [0, 1] scale, not clipped; every model sees the same
noisy images. Classical denoisers were tuned on validation images only. Learned rows: the setup cell says
whether training converged, i.e. whether every trial's validation MSE improved by less than 1% over the last 20%
of its updates (`reproduce.converged`); a row marked **not converged** was still learning when it stopped, and
its numbers are not those of the trained model. Conv-NGC keeps its best epoch or restore point (its recipe); a
baseline whose setup cell says "best epoch on val" ends with the weights of its epoch with the lowest validation
MSE, one without it with its last epoch's.
"""
# What Eq. 6's per-channel convention does where a target's channel is all zero (tests/app/test_reproduce.py
# recomputes the black image's score on the quick run's 200 test images).
PSNR_NOTES = {"color-mnist": """**PSNR on Color-MNIST: compare the PSNR of the MSE, not Eq. 6.** Each digit is drawn in one colour
channel, so two of every target's three channels are all zero, and Eq. 6 gives an output that leaves such a
channel zero the 100 dB cap: an all-black image scores about 70 dB (about 15 dB by the PSNR of the MSE), and a
model whose digits are dim or blank can outscore a better one on Eq. 6 at ten times its MSE. The paper reports
no PSNR for Color-MNIST.
"""}


def write_tables(out_dir):
    """Rebuild every <table>.md from the raw JSON files under out_dir/raw."""
    by_table = {}
    for rec in read_raw(out_dir):
        by_table.setdefault(rec["row"]["table"], []).append(rec)
    order = {r.id: i for i, r in enumerate(all_rows())}
    paths = []
    for table, recs in by_table.items():
        recs.sort(key=lambda rec: order.get(rec["row"]["id"], 1 << 30))
        lines = ["# %s" % _table_title(table, recs), "", HEADER]
        datasets = {rec["row"]["test_dataset"] for rec in recs}
        lines += [PSNR_NOTES[d] for d in sorted(datasets) if d in PSNR_NOTES]
        tasks = [t for t in ("reconstruction", "denoising", "ood") if any(t in rec["row"]["tasks"] for rec in recs)]
        for task in tasks:
            lines += ["## %s" % {"reconstruction": "Reconstruction", "denoising": "Denoising (x + N(0, 0.1))",
                                 "ood": "Out-of-distribution reconstruction"}[task], ""]
            head = ["model"] + (["train -> test"] if task == "ood" else [])
            for m in METRICS:
                head.append({"mse": "MSE", "ssim_global": "SSIM (Eq. 5)", "ssim": "SSIM (windowed)",
                             "psnr": "PSNR, Eq. 6 (dB)"}[m])
                if m != "ssim":
                    head.append("paper")
            head += ["PSNR of the MSE (dB)", "setup", "job seconds"]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for rec in recs:
                row = rec["row"]
                if task not in row["tasks"]:
                    continue
                s = rec["summary"][task]
                cells = [NAMES[row["model"]]]
                if task == "ood":
                    pair = "%s -> %s" % (DATASET_TITLES[row["dataset"]], DATASET_TITLES[row["test_dataset"]])
                    if row["substitute"]:
                        pair += " (substitute; paper: %s)" % " -> ".join(DATASET_TITLES[d] for d in
                                                                        row["paper_key"].split("->"))
                    cells.append(pair)
                for m in METRICS:
                    cells.append(_cell(s, m, len(rec["trials"])))
                    if m != "ssim":
                        cells.append(_paper_cell(row["paper_key"], row["model"], task, m))
                cells += [_psnr_of_mse_cell(rec, task), _setup_cell(rec), "%.0f" % rec.get("job_seconds", 0)]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        tuned = [rec for rec in recs if "tuning" in rec]
        if tuned:
            lines += ["Classical parameters chosen on validation images: " + "; ".join(
                "%s %s = %g" % (NAMES[rec["row"]["model"]], rec["tuning"]["param"], rec["tuning"]["value"])
                for rec in tuned) + ".", ""]
        path = os.path.join(out_dir, table + ".md")
        text = "\n".join(lines)
        write_text(path, text)
        paths.append(path)
    return paths


def _table_title(table, recs):
    if table == "table2b-ood":
        return "Table 2b: out-of-distribution reconstruction"
    ds = DATASET_TITLES.get(recs[0]["row"]["dataset"], recs[0]["row"]["dataset"])
    if table.startswith("extra-"):
        return "Beyond the paper: %s on %s" % (NAMES[recs[0]["row"]["model"]], ds)
    return "Tables 1%s: %s, reconstruction and denoising" % (" and 2a" if "2a" in table else "", ds)


def figure3_rows(x, noisy, out, n=6):
    """Figure 3: clean / noisy / Conv-NGC denoised test images (viz.save_grid's rows)."""
    return {"clean": x[:n], "noisy": np.clip(noisy[:n], 0, 1), "denoised": np.clip(out[:n], 0, 1)}


def _maps(z):
    """(C, H, W) state maps -> (C, 1, H, W), each map scaled to [0, 1] on its own range."""
    lo = z.min(axis=(1, 2), keepdims=True)
    span = np.maximum(z.max(axis=(1, 2), keepdims=True) - lo, 1e-12)
    return ((z - lo) / span)[:, None]


FIGURE4_MAPS = 10          # the first maps of each layer (the paper shows a few)


def figure4_rows(model, x1):
    """Figure 4: the bottom three layers of a trained Conv-NGC for one test image (reconstruction settling):
    the second latent layer on top, then the first, then the clamped input (as the paper stacks them)."""
    saved, model.rng = model.rng, np.random.default_rng([0, 1])
    try:
        res = model.settle(x1)
    finally:
        model.rng = saved
    z = [model.backend.to_host(a)[0] for a in res.z[:3]]
    return {"z^2 (%d maps, %dx%d)" % z[2].shape: _maps(z[2]), "z^1 (%d maps, %dx%d)" % z[1].shape: _maps(z[1]),
            "z^0 (input channels)": _maps(z[0]), "input (RGB)": x1}


def plot_val_curves(path, curves, title):
    """Validation reconstruction MSE (0-255 scale) against epochs, one line per trial."""
    fig, axes = viz._new_figure()
    ax = axes[0, 0]
    for label, v in curves.items():
        ax.plot(np.arange(1, len(v) + 1), v, marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation MSE (0-255 scale)")
    vals = np.concatenate([np.asarray(v, float).ravel() for v in curves.values()] or [np.ones(1)])
    if np.all(vals[np.isfinite(vals)] > 0):             # MSEs span decades while a model learns: log axis
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return viz._save_fig(fig, path)


# ------------------------------------------------------------------------------------------------------------
# plan and estimate
# ------------------------------------------------------------------------------------------------------------
def _n(count, dataset, part):
    """A scale's image count (None: the whole split of the dataset)."""
    return count if count is not None else FULL.get(dataset, FULL["cifar10"])[part == "test"]


def measured_costs(folders=None):
    """Per-image seconds measured by finished runs: {model: [{"batch", "learn", "eval", "tune", "overhead",
    "source"}]}, one entry per job (a model trained or tuned on one dataset), read from folder/raw/*.json of each
    folder (default MEASURED, in the repository). learn: seconds per training image-epoch (its share of the
    per-epoch validation taken out); eval: per evaluated image and task; tune: per tuning image (the whole grid);
    overhead: the rest of job_seconds (data, figures)."""
    folders = [repo_path(f) for f in MEASURED] if folders is None else folders
    out = {}
    for folder in folders:
        jobs = {}
        for rec in (read_raw(folder) if os.path.isdir(os.path.join(folder, "raw")) else []):
            if "job_seconds" in rec and rec.get("trials"):
                jobs.setdefault((rec["row"]["model"], rec["row"]["dataset"]), []).append(rec)
        for (model, dataset), recs in jobs.items():
            s = recs[0]["setup"]
            evals = sum(t.get("eval_seconds", 0.0) for rec in recs for t in rec["trials"])
            units = sum(len(rec["trials"]) * len(rec["row"]["tasks"]) * _n(rec["setup"]["n_test"],
                        rec["row"]["test_dataset"], "test") for rec in recs)
            e = {"batch": s.get("batch"), "dataset": dataset, "scale": recs[0].get("scale"), "eval": evals / units,
                 "tune": 0.0, "learn": 0.0, "source": os.path.join(os.path.basename(os.path.normpath(folder)), "raw")}
            if model in TRAINED:
                train_s = sum(t["train_seconds"] for t in recs[0]["trials"])
                n_train, k = _n(s["n_train"], dataset, "train"), len(recs[0]["trials"])
                e["learn"] = max(train_s - e["eval"] * s["n_val"] * s["epochs"] * k, 0.0) / (n_train * s["epochs"] * k)
                spent = train_s + evals
            else:
                e["tune"] = recs[0]["tuning"]["seconds"] / s["n_tune"]
                spent = recs[0]["tuning"]["seconds"] + evals
            e["overhead"] = max(max(rec["job_seconds"] for rec in recs) - spent, 0.0)
            out.setdefault(model, []).append(e)
    return out


def _rates(model, batch, measured, dataset=None, scale=None):
    """(learn, eval, tune, overhead, source) for a model at a batch size: the mean of the measured jobs at the
    nearest batch size (of that scale's jobs when one was measured, then of that dataset's: two jobs of a model
    can have run at different loads, threads or schedules, as Conv-NGC's paper-scale job at T up to 240 on both
    cores and its quick jobs on one thread), else COST's (source None)."""
    got = measured.get(model)
    for key, want in (("scale", scale), ("dataset", dataset)):
        if got and want is not None:
            got = [e for e in got if e.get(key) == want] or got
    if not got:
        learn, ev = COST[model]
        return (0.0 if model in CLASSICAL else learn), ev, (learn if model in CLASSICAL else 0.0), 0.0, None
    near = min(abs((e["batch"] or 0) - (batch or 0)) for e in got)
    pick = [e for e in got if abs((e["batch"] or 0) - (batch or 0)) == near]
    mean = lambda k: float(np.mean([e[k] for e in pick]))
    return mean("learn"), mean("eval"), mean("tune"), mean("overhead"), pick[0]["source"]


def estimate_seconds(rows, scale, trials, per_job=False, measured=None):
    """The time of the rows from measured per-image rates (measured_costs; COST where none was measured):
    training with its per-epoch validation, the test evaluations, a classical denoiser's tuning, and each job's
    overhead. per_job=True returns {(model, dataset): (seconds, source)} instead of the total."""
    measured = measured_costs() if measured is None else measured
    sc = SCALES[scale]
    jobs, est = {}, {}
    for r in rows:
        jobs.setdefault((r.model, r.dataset), []).append(r)
    for (m, ds), jrows in jobs.items():
        batch = train_size(sc, m, ds)[2] if m in TRAINED else None
        learn, ev, tune, overhead, source = _rates(m, batch, measured, ds, scale)
        evals = sum(len(r.tasks) * _n(n_test_for(sc, m), r.test_dataset, "test") for r in jrows)
        if m in TRAINED:
            n_train, epochs, _ = train_size(sc, m, ds)
            sec = trials * (learn * _n(n_train, ds, "train") * epochs + ev * (sc["n_val"] * epochs + evals))
        else:
            sec = tune * sc["n_tune"] + trials * ev * evals
        est[m, ds] = (sec + overhead, source)
    return est if per_job else sum(v[0] for v in est.values())


def spread(per_job, trials, workers=None, address=None):
    """(minutes, what) of a run of the jobs `per_job` ({(model, dataset): (seconds of one-thread work, _)}, as
    estimate_seconds(per_job=True) gives): its parts (a trained model's trials one each, a classical job one)
    handed, longest first, to whichever local worker frees first (default: the cores here; one without Ray).
    Measured on the idle 2-core development machine, the quick scale: 156 min of jobs ran in 78.1 min on 2
    workers (2026-12-07); as it was the day before, 121 min of jobs in 61.9 min on 2 workers and 95.8 min
    serially, where the Conv-NGC and residual jobs use every core (docs/cluster.md).
    On a cluster (address) the workers are not known here: the one-thread total."""
    total = sum(v[0] for v in per_job.values())
    if address is not None:
        return total / 60, "of one-thread work, spread over the cluster's workers"
    workers = workers or os.cpu_count() or 1
    if workers > 1 and not fanout.have_ray():
        workers = 1
    if workers == 1:
        return total / 60, "serially (at most: the Conv-NGC and residual jobs use every core)"
    parts = []
    for (m, _), (sec, _) in per_job.items():
        n = trials if m in TRAINED else 1
        parts += [sec / n] * n
    free = [0.0] * workers
    for sec in sorted(parts, reverse=True):
        free[free.index(min(free))] += sec
    return max(free) / 60, "on %d workers (%.0f min of one-thread work)" % (workers, total / 60)


def list_rows(rows, skipped, scale, trials, log=print, backend=None, workers=None, address=None):
    sc = SCALES[scale]
    log("rows at scale %r (%d %s; test images per dataset: %s):" % (scale, trials, "trial" if trials == 1 else "trials",
                                                                    sc["n_test"] or "all"))
    for r in rows:
        if r.model in TRAINED:
            n, ep, b = train_size(sc, r.model, r.dataset)
            size = "%s train imgs x %s, batch %d" % (n or "all", _epochs(ep), b)
        else:
            size = "tuned on %d validation images" % sc["n_tune"]
        log("  %-32s %-28s %s%s" % (r.id, ", ".join(r.tasks), size, "  [substitute]" if r.substitute else ""))
    for r, why in skipped:
        log("  %-32s skipped: %s" % (r.id, why))
    per_job = estimate_seconds(rows, scale, trials, per_job=True)
    for (m, ds), (sec, source) in per_job.items():
        log("  estimate: %-28s on %-12s %6.1f min  (%s)" % (NAMES[m], DATASET_TITLES[ds], sec / 60,
                                                           "rates measured in %s" % source if source else
                                                           "no committed measurement: a rough per-image cost"))
    log("estimated time: %.0f min %s (per-image rates measured by the committed runs, one thread per job, "
        "Conv-NGC and residual Conv-NGC on the cpu backend%s)"
        % (spread(per_job, trials, workers, address)
           + ("; the numpy backend makes their rows about 40x and 16x longer" if backend == "numpy" else "",)))


_positive_int = int_at_least(1)


def _path(text):
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a path, got an empty string %r" % text)
    return text


def build_parser():
    ap = argparse.ArgumentParser(prog="convngc reproduce", description="Reproduce the paper's Tables 1-2 and "
                                 "Figures 3-4 next to its baselines and classical denoisers.")
    ap.add_argument("--scale", choices=tuple(SCALES), default="quick",
                    help="smoke: every row end to end in seconds (the numbers mean nothing); quick: sized for 2 CPU "
                    "cores (--list gives the estimate); paper: the full protocol (default quick)")
    ap.add_argument("--trials", type=_positive_int, default=5, help="trials (seeds 0..trials-1) (default and "
                    "paper: 5)")
    ap.add_argument("--rows", nargs="+", default=None, metavar="PATTERN",
                    help="run only the rows matching these patterns, e.g. 'cifar10/*' 'cifar10->cinic10/conv-ngc'")
    ap.add_argument("--backend", choices=BACKENDS, default=None, help="backend of the Conv-NGC rows (default: the "
                    "fastest available)")
    ap.add_argument("--data-dir", type=_path, default=None, help="real data (default: $CONVNGC_DATA_DIR or "
                    "../shared/data)")
    ap.add_argument("--out", type=_path, default=None, help="folder for the tables, raw JSON and figures (default: a "
                    "new folder runs/reproduce-<time>; --out results/quick adds to the committed quick run's tables)")
    ap.add_argument("--overwrite", action="store_true", help="replace finished rows in --out/raw/ of another scale or "
                    "config (default: refuse, naming them)")
    ap.add_argument("--resume", action="store_true", help="skip the rows --out/raw/ already holds finished, of this "
                    "scale and config (after Ctrl-C, a failed job or a lost machine: the same command plus --resume)")
    ap.add_argument("--list", action="store_true", help="print the rows, their sizes and a time estimate; run nothing")
    fanout.add_arguments(ap)
    return ap


class OutError(Exception):
    """--out cannot take this run: a file, or finished rows of another scale or config (exit status 2)."""


def _same_row(old, scale, setup):
    """What differs between a finished row's record and this run's (scale, setup): [] if nothing."""
    new = json.loads(json.dumps(strict_json({"scale": scale, "setup": setup})))
    diff = ["scale %s -> %s" % (old.get("scale"), scale)] if old.get("scale") != scale else []
    a, b = old.get("setup") or {}, new["setup"]
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
                diff += ["%s.%s %s -> %s" % (k, j, a[k].get(j), b[k].get(j)) for j in sorted(set(a[k]) | set(b[k]))
                         if a[k].get(j) != b[k].get(j)]
            else:
                diff.append("%s %s -> %s" % (k, a.get(k), b.get(k)))
    return diff


def _finished(out_dir, row, scale, trials, backend):
    """What differs between the finished row in out_dir/raw/ and this run ([] nothing), or None if there is none.
    An unreadable file raises OSError or ValueError."""
    path = raw_path(out_dir, row.id)
    if not os.path.lexists(path):
        return None
    with open_regular(path, "r") as f:
        old = json.load(f)
    if not isinstance(old, dict):
        raise ValueError("not a JSON object")
    return _same_row(old, scale, row_setup(row, SCALES[scale], trials, backend))


def check_out(out_dir, rows, scale, trials, backend, overwrite=False):
    """Refuse (OutError), before anything runs, an --out that is a file, or whose raw/ holds a finished row that
    this run would replace with another scale or config (unless overwrite). The same row with the same scale
    and config may be run again: it replaces itself."""
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise OutError("--out %s is a file, not a folder; choose a folder" % out_dir)
    raw = os.path.join(out_dir, "raw")
    if os.path.lexists(raw) and not os.path.isdir(raw):
        raise OutError("--out %s: %s is a file, not a folder" % (out_dir, raw))
    if overwrite:
        return
    clash = []
    for r in rows:
        path = raw_path(out_dir, r.id)
        try:
            diff = _finished(out_dir, r, scale, trials, backend)
        except (OSError, ValueError) as exc:
            clash.append("%s (unreadable: %s)" % (path, exc))
            continue
        if diff:
            clash.append("%s (%s)" % (path, "; ".join(diff[:4]) + ("; ..." if len(diff) > 4 else "")))
    if clash:
        raise OutError("--out %s already holds finished rows of another scale or config, which this run would "
                       "replace: %s. Choose another --out (the default is a new folder), or pass --overwrite to "
                       "replace them" % (out_dir, ", ".join(clash)))


def _new_out_dir():
    """runs/reproduce-<time>, or -2, -3, ... if taken (created here, atomically)."""
    base = os.path.join("runs", "reproduce-%s" % time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs("runs", exist_ok=True)
    k = 1
    while True:
        path = base if k == 1 else "%s-%d" % (base, k)
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            k += 1


def main(argv=None, log=print):
    """Exit status: 0 done, 1 a file could not be written, a job failed or nothing to run, 2 a bad option, data,
    --out or --address, 130 Ctrl-C, 143 SIGTERM."""
    from ..download import Terminated, sigterm_raises
    args = build_parser().parse_args(argv)
    args.backend = backends.resolve(args.backend)

    def refused(why):
        print("convngc reproduce: error: %s" % why, file=sys.stderr)
        return 2
    if not args.list:                               # the options first, before the rows' data is looked at
        why = fanout.check(args.workers, args.address)
        if why:
            return refused(why)
        if args.resume and args.out is None:
            return refused("--resume needs --out, the folder of the run to resume")
        try:
            backends.get(args.backend)              # a backend that cannot run here
            if args.out is not None:
                check_out(args.out, [], args.scale, args.trials, args.backend, args.overwrite)
        except BackendUnavailable as exc:
            return refused("--backend %s: %s" % (args.backend, exc))
        except OutError as exc:
            return refused(exc)
    rows, skipped = select_rows(args.rows, args.data_dir, log=(lambda s: None) if args.list else log)
    if args.list:
        list_rows(rows, skipped, args.scale, args.trials, log, args.backend, args.workers, args.address)
        return 0
    if not rows:
        log("nothing to run")
        return 1
    if args.out is not None:
        try:
            check_out(args.out, rows, args.scale, args.trials, args.backend, args.overwrite)
        except OutError as exc:
            return refused(exc)
    if args.resume:
        def finished(r):
            try:
                return _finished(args.out, r, args.scale, args.trials, args.backend) == []
            except (OSError, ValueError):                   # unreadable (only with --overwrite): run it again
                return False
        done = [r for r in rows if finished(r)]
        for r in done:
            log("skipping %s: finished in %s (--resume)" % (r.id, raw_path(args.out, r.id)))
        rows = [r for r in rows if r not in done]
        if not rows:
            log("every row is finished in %s; nothing to run" % args.out)
            return 0
    out = args.out if args.out is not None else _new_out_dir()
    log("running %d rows at scale %r with %s, Conv-NGC backend %s -> %s (estimate %.0f min %s)"
        % ((len(rows), args.scale, _trials(args.trials), args.backend, out)
           + spread(estimate_seconds(rows, args.scale, args.trials, per_job=True), args.trials, args.workers,
                    args.address)))
    if args.backend == "numpy":
        log("note: the Conv-NGC rows run on the NumPy reference, about 40x slower than the cpu backend")
    t0 = time.time()
    try:
        with sigterm_raises():
            _, failed = run(rows, args.scale, args.trials, args.backend, args.data_dir, out, log,
                            workers=args.workers, address=args.address)
    except fanout.ClusterError as exc:
        return refused(exc)
    except (data.DataError, NotARegularFile) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1 if isinstance(exc, data.DataReadError) else 2
    except OSError as exc:
        print("error: cannot write %s: %s" % (exc.filename, exc.strerror) if exc.filename and exc.strerror
              else "error: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print("%s; the rows finished before it are in %s/raw" % (
            "terminated" if isinstance(exc, Terminated) else "interrupted", out), file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    if failed:
        for (m, ds), exc in failed.items():
            print("error: %s on %s failed (%s: %s); its rows are not in %s/raw, the others are" % (
                NAMES[m], DATASET_TITLES[ds], type(exc).__name__, exc, out), file=sys.stderr)
        bad_data = all(isinstance(e, (data.DataError, NotARegularFile)) and not isinstance(e, data.DataReadError)
                       for e in failed.values())
        return 2 if bad_data else 1
    log("done in %.1f min; tables in %s" % ((time.time() - t0) / 60, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
