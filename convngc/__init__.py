"""convngc: everything shared by both backends (data, metrics, training loop, checkpoints, CLI).

A trained model on your own pictures (any size; a path or an array in, an array out):

    import convngc
    y = convngc.denoise("photo.png")                      # the shipped CIFAR-10 model; uint8 (H, W, 3) out
    y = convngc.reconstruct(x, model="runs/my-run")       # x: (H, W), (H, W, C) or (C, H, W); uint8, uint16 or
                                                          # float in [0, 1]; the result has its shape and dtype
"""
__version__ = "0.1.0"


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
