"""convngc: the library over every backend (model, backends, data, metrics, training, checkpoints, run folders,
shipped models, pictures, CLI); the paper's reproduction and the study are its subpackage convngc.experiments.

A trained model on your own pictures (any size; a path or an array in, an array out):

    import convngc
    y = convngc.denoise("photo.png")                      # the shipped CIFAR-10 model; uint8 (H, W, 3) out
    y = convngc.reconstruct(x, model="runs/my-run")       # x: (H, W), (H, W, C) or (C, H, W); uint8, uint16 or
                                                          # float in [0, 1]; the result has its shape and dtype
"""
__version__ = "0.1.0"

# The library's entry points, imported on first use (so `import convngc` stays fast: no NumPy, no Numba):
#   convngc.ConvNGC, convngc.Config                  the model and its configuration
#   convngc.load_model(spec, backend=None)           a shipped model's name ("cifar10"), a run folder (its best.npz)
#                                                    or a checkpoint -> (ConvNGC, meta)
#   convngc.load_dataset(name, split), to_model(x)   data (uint8 NHWC) and the model's float NCHW in [0, 1]
#   convngc.evaluate_metrics, mse, psnr, ssim_global, ssim_windowed, mean_std      metrics (Eqs. 4-6, SSIM)
#   convngc.BACKENDS, convngc.default_backend()      the backends and the default (convngc/backends.py)
#   convngc.data, .metrics, .backends, .train, .checkpoint, .models, ...          the modules themselves
_LAZY = {
    "ConvNGC": ("convngc.model", "ConvNGC"),
    "Config": ("ngc_ref.config", "Config"),
    "DivergenceError": ("convngc.model", "DivergenceError"),
    "load_model": ("convngc.models", "load_model"),
    "load_dataset": ("convngc.data", "load_dataset"),
    "to_model": ("convngc.data", "to_model"),
    "DATASET_NAMES": ("convngc.data", "DATASET_NAMES"),
    "evaluate_metrics": ("convngc.metrics", "evaluate_metrics"),
    "mse": ("convngc.metrics", "mse"),
    "psnr": ("convngc.metrics", "psnr"),
    "ssim_global": ("convngc.metrics", "ssim_global"),
    "ssim_windowed": ("convngc.metrics", "ssim_windowed"),
    "mean_std": ("convngc.metrics", "mean_std"),
    "BACKENDS": ("convngc.backends", "BACKENDS"),
    "BackendUnavailable": ("convngc.backends", "BackendUnavailable"),
    "default_backend": ("convngc.backends", "default"),
}
__all__ = ["denoise", "reconstruct"] + list(_LAZY)


def __getattr__(name):
    """The entry points above and the submodules (convngc.data, convngc.metrics, ...), imported on first use."""
    import importlib
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value                      # once: later lookups do not come here
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module("%s.%s" % (__name__, name))
        except ModuleNotFoundError as exc:
            if exc.name != "%s.%s" % (__name__, name):
                raise
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def denoise(image, model="cifar10", sigma=None, *, backend=None, method=None, tile=None, overlap=None, seed=0,
            T=None, batch=None, progress=False):
    """Denoise a picture: `image` a file path (PNG, JPEG, TIFF, BMP, .npy) or an array ((H, W), (H, W, C) or
    (C, H, W) with C = 1..4; uint8, uint16, or float in [0, 1]); returns an array of the input's shape and dtype
    (a file's as it stores it: (H, W, C), or (H, W) for a grey picture), alpha kept as it was.

    model: a shipped model's name ("cifar10", convngc.models.names()), a run folder, a checkpoint .npz, or a
    ConvNGC. sigma: the noise std of the picture on the [0, 1] scale (default: the level the model was tuned
    for, 0.1); the denoising reading is rescaled for it. method: "tiles" (default) or "whole" (apply.py);
    tile / overlap: the tiles' side and overlap in pixels (64 / 16); seed: the z^L draws; T: settling steps
    (default: the model's tuned T_denoise); backend: "cpu", "numpy", "cuda" (default: the fastest here).
    Notes (a grey picture through a colour model, a converted mode) and a noise level far from sigma are
    warnings."""
    from . import pictures
    return pictures.run_api("denoise", image, model, sigma, backend, method, tile, overlap, seed, T, batch, progress)


def reconstruct(image, model="cifar10", *, backend=None, method=None, tile=None, overlap=None, seed=0, T=None,
                batch=None, progress=False):
    """Reconstruct a picture (z^0 clamped to it for the model's T steps; the output is zbar^0): the same inputs
    and outputs as `denoise`, without sigma."""
    from . import pictures
    return pictures.run_api("reconstruct", image, model, None, backend, method, tile, overlap, seed, T, batch,
                            progress)
