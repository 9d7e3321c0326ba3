"""Conv-AE and Conv-DAE: the backprop baselines of the paper (Appendix B), in PyTorch (the optional extra
`pip install .[baselines]`; nothing else in convngc needs torch).

The paper's description, and where this build departs from it (one line each):
  - encoder: five blocks of conv (32 maps, 3x3, SAME) -> ReLU (SELU for the DAE) -> batch norm -> max-pool
    (stride 2), as printed, EXCEPT the convolution's stride: 1, not 2. With both strides at 2 each block
    divides the side by 4 and a 32x32 image is gone after three blocks; with the pools alone doing the
    downsampling the five blocks take 32 -> 16 -> 8 -> 4 -> 2 -> 1 (a 1x1x32 bottleneck).
  - decoder ("multiple layers of deconvolution", widths not given): five stride-2 3x3 transposed convs that
    mirror the five pools (1 -> 2 -> ... -> 32), each hidden one followed by the block's activation and batch
    norm, the last by the logistic sigmoid (as printed). Widths 32 -> 20 -> 15 -> 7 -> 7 -> 3: the
    paper's encoder holds 38,208 trainable parameters, so the decoder has 10,185 left; among the width lists
    that spend exactly that (non-increasing, 3x3 kernels, batch norm on every hidden layer) this is the one
    closest to a geometric taper from 32 to 3. Total: 48,393 trainable parameters, the paper's count.
  - batch norm counts its scale and shift as trainable (2 per map), as Keras and PyTorch both do.
  - Glorot (Xavier) uniform weights, zero biases (Keras's defaults, which "glorot initialization" names).
  - loss: mean squared error on [0, 1] pixels (the paper names none).
  - Adam, step 2e-5, batches of 128 (as printed); PyTorch's Adam defaults otherwise. The reproduction takes
    3e-3 (1e-2 on Color-MNIST at the quick scale) annealed to 0 by a cosine over the run (decay="cosine", ours)
    in batches of 32, at both scales (reproduce.SCALES).
  - Conv-DAE: trained on x + N(0, 0.1) (std 0.1 on the [0, 1] scale, not clipped, a fresh draw per batch)
    against the clean x; SELU instead of ReLU (as printed).
The 1x1x32 bottleneck bounds what this network can reconstruct: 32 numbers per 3,072-pixel image. The best
linear 32-number code (PCA) reconstructs CIFAR-10 at 19.1 dB and 30 dB takes about 530 principal components
(bench/ae_convergence.py); trained to its curve's end this network stays below 30 dB by far (results/README.md,
"The autoencoders: convergence, and why not 30 dB"), whatever the paper's 36.79 dB.
"""
import time

import numpy as np
import torch
from torch import nn

from .. import metrics

__all__ = ["ConvAE", "AutoEncoderModel", "PAPER_PARAMETERS", "DECODER_WIDTHS", "DECAYS", "step_size"]

PAPER_PARAMETERS = 48393
ENCODER_MAPS = 32
N_BLOCKS = 5
DECODER_WIDTHS = (20, 15, 7, 7)        # hidden transposed-conv widths; the output has the image's 3 channels


DECAYS = (None, "cosine")


def step_size(lr, decay, t, total):
    """Adam's step for update t (0-based) of `total`: lr throughout (decay None), or cosine annealing
    lr (1 + cos(pi t / total)) / 2, from lr at the first update towards 0 at the last (ours, not the paper's)."""
    if decay is None:
        return lr
    return lr * 0.5 * (1.0 + np.cos(np.pi * t / total))


class ConvAE(nn.Module):
    """The encoder/decoder above; `denoising=True` picks SELU (the paper's Conv-DAE).

    `blocks` < 5 is NOT the paper's network: a measuring variant (bench/ae_convergence.py) with fewer conv+pool
    blocks, so a larger code (3 blocks: 4x4x32 = 512 numbers, against the paper's 1x1x32 = 32), and decoder
    widths of 32; it shows what the paper's 32-number bottleneck costs. The reproduction always uses 5."""

    def __init__(self, channels=3, denoising=False, blocks=N_BLOCKS):
        super().__init__()
        act = nn.SELU if denoising else nn.ReLU
        enc, c = [], channels
        for _ in range(blocks):
            enc += [nn.Conv2d(c, ENCODER_MAPS, 3, stride=1, padding=1), act(), nn.BatchNorm2d(ENCODER_MAPS),
                    nn.MaxPool2d(2, 2)]
            c = ENCODER_MAPS
        dec = []
        for w in (DECODER_WIDTHS if blocks == N_BLOCKS else (ENCODER_MAPS,) * (blocks - 1)):
            # stride 2, padding 1, output_padding 1: exactly doubles the side (32 -> ... mirrors the pools)
            dec += [nn.ConvTranspose2d(c, w, 3, stride=2, padding=1, output_padding=1), act(), nn.BatchNorm2d(w)]
            c = w
        dec += [nn.ConvTranspose2d(c, channels, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid()]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.decoder(self.encoder(x))

    def n_trainable(self):
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class AutoEncoderModel:
    """Training and inference around ConvAE on float NCHW arrays in [0, 1] (the project's layout)."""

    def __init__(self, denoising=False, seed=0, lr=2e-5, noise_std=0.1, channels=3, blocks=N_BLOCKS, decay=None):
        if decay not in DECAYS:
            raise ValueError("AutoEncoderModel: decay must be one of %s, got %r" % (DECAYS, decay))
        torch.manual_seed(seed)
        self.net = ConvAE(channels, denoising, blocks).float()
        self.denoising, self.noise_std, self.seed, self.blocks, self.lr, self.decay = (
            denoising, noise_std, seed, blocks, lr, decay)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.gen = torch.Generator().manual_seed(seed)

    def fit(self, train_x, val_x, epochs, batch_size=128, log=print, state_path=None, keep_best=False):
        """Minibatch Adam on the MSE; after each epoch the validation reconstruction MSE on the [0, 255] scale.
        state_path: a file the training state is kept in after every epoch (partial.py); a state found there
        for this training is continued, bit-identically. keep_best: end with the weights of the epoch with the
        lowest validation MSE (history["best_epoch"], 1-based) instead of the last."""
        from . import partial
        history = {"train_loss": [], "val_mse": [], "epoch_seconds": []}
        want = partial.key("conv-dae" if self.denoising else "conv-ae", self.seed, epochs, batch_size, train_x,
                           lr=self.lr, noise_std=self.noise_std, blocks=self.blocks,
                           **({"keep_best": True} if keep_best else {}),
                           **({"decay": self.decay} if self.decay else {}))
        start, self.resumed_from, best = 0, 0, None
        st = partial.load(state_path, want)
        if st is not None:
            self.net.load_state_dict(st["net"])
            self.opt.load_state_dict(st["opt"])
            self.gen.set_state(st["gen"])
            history, start, best = st["history"], st["epoch"], st.get("best")
            self.resumed_from = start
            log("  resumed after epoch %d/%d (%s)" % (start, epochs, state_path))
        xt = torch.as_tensor(np.ascontiguousarray(train_x, dtype=np.float32))
        per_epoch = -(-len(xt) // batch_size)
        for epoch in range(start, epochs):
            t0, losses = time.time(), []
            self.net.train()
            order = torch.randperm(len(xt), generator=self.gen)
            for k, i in enumerate(range(0, len(xt), batch_size)):
                if self.decay:
                    self.opt.param_groups[0]["lr"] = step_size(self.lr, self.decay, epoch * per_epoch + k,
                                                               epochs * per_epoch)
                x = xt[order[i:i + batch_size]]
                inp = x + self.noise_std * torch.randn(x.shape, generator=self.gen) if self.denoising else x
                loss = torch.mean((self.net(inp) - x) ** 2)
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                losses.append(float(loss.detach()))
            val = metrics.mse(self.output(val_x), val_x) if len(val_x) else float("nan")
            history["train_loss"].append(float(np.mean(losses)))
            history["val_mse"].append(float(val))
            history["epoch_seconds"].append(time.time() - t0)
            log("  epoch %d/%d: train loss %.4g, validation reconstruction MSE %.4g (0-255 scale), %.1fs"
                % (epoch + 1, epochs, history["train_loss"][-1], val, history["epoch_seconds"][-1]))
            if keep_best and np.isfinite(val) and (best is None or val < best[0]):
                best = (float(val), epoch + 1, {k: v.detach().clone() for k, v in self.net.state_dict().items()})
            if state_path is not None and epoch + 1 < epochs:
                partial.save(state_path, want, {"epoch": epoch + 1, "history": history, "gen": self.gen.get_state(),
                                                "net": self.net.state_dict(), "opt": self.opt.state_dict(),
                                                "best": best})
        if keep_best and best is not None:
            self.net.load_state_dict(best[2])
            history["best_epoch"] = best[1]
        return history

    @torch.no_grad()
    def output(self, x, batch_size=500):
        """The network's output for inputs x (clean for reconstruction, noisy for denoising), eval mode."""
        self.net.eval()
        outs = [self.net(torch.as_tensor(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32))).numpy()
                for i in range(0, len(x), batch_size)]
        return np.concatenate(outs)
