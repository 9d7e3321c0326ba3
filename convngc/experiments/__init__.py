"""The experiments built on the library: the paper's reproduction, the study, and the tables of committed runs.

    convngc reproduce ...                              reproduce.py: Tables 1-2 and Figures 3-4 beside the baselines
    python -m convngc.experiments.study list|run|fixedpoint|report     study.py (+ study_report.py: its figures)
    python -m convngc.experiments.seeds results/cifar10-seeds          seeds.py: the seeds table

baselines.py (FC-NGC, residual Conv-NGC, classical denoisers) and autoencoder.py (Conv-AE/DAE, PyTorch) are the
models the reproduction places Conv-NGC among. fanout.py runs the reproduction's and the study's independent jobs
one after another here, or as Ray tasks (--workers, --address; docs/cluster.md).

The library (convngc: model, backends, data, metrics, training, checkpoints, run folders, models, pictures, CLI)
never imports this package; only the command line hands `convngc reproduce` to it. The experiments use the
library as any user would: they train through convngc.train.fit and save through convngc.checkpoint.

Why a subpackage and not a top-level `experiments/`: it installs with the library (`convngc reproduce` works
from any install, a wheel included), under the project's own name (a top-level package called `experiments`
would collide with any other of that name in site-packages), and its modules keep one import root. The folders
below, where the experiments read and write, are relative to the working directory (the repository's root).
"""
import os

RESULTS = "results"
QUICK = os.path.join(RESULTS, "quick")                # the committed `convngc reproduce --scale quick` run
PAPER_SCALE = os.path.join(RESULTS, "paper-scale")    # the committed `--scale paper` runs (one trial each)
STUDY_RESULTS = os.path.join(RESULTS, "study")        # the study's JSON per experiment, its figures and tables
STUDY_STATE = os.path.join("runs", "study")           # the study's run folders (checkpoints; not in git)
HEADLINE = os.path.join(RESULTS, "headline")          # full CIFAR-10 runs of `convngc train`


def repo_path(*parts):
    """A path under the repository this package sits in (the committed results, when the checkout has them)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), *parts)
