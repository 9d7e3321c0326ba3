"""Conv-AE / Conv-DAE (convngc/experiments/autoencoder.py, Appendix B): the paper's 48,393 trainable parameters and the
architecture as documented. PyTorch is an optional extra; without it these tests skip (CI installs only .[dev])."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install .[baselines]); the Conv-AE/"
                                            "Conv-DAE baselines are untested here, which is NOT a pass")
from torch import nn  # noqa: E402

from convngc.experiments import autoencoder  # noqa: E402


@pytest.mark.parametrize("denoising", [False, True])
def test_paper_parameter_count_and_shapes(denoising):
    net = autoencoder.ConvAE(denoising=denoising)
    assert net.n_trainable() == autoencoder.PAPER_PARAMETERS == 48393
    assert sum(p.numel() for p in net.encoder.parameters()) == 38208      # five conv(32, 3x3) + batch-norm blocks
    act = nn.SELU if denoising else nn.ReLU
    assert sum(isinstance(m, act) for m in net.modules()) == 5 + len(autoencoder.DECODER_WIDTHS)
    convs = [m for m in net.encoder if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(c.stride == (1, 1) and c.out_channels == 32 for c in convs)
    h = torch.rand(2, 3, 32, 32)
    sides = []
    for m in net.encoder:
        h = m(h)
        if isinstance(m, nn.MaxPool2d):
            sides.append(h.shape[-1])
    assert sides == [16, 8, 4, 2, 1]                                        # the pools do the downsampling
    y = net(torch.rand(2, 3, 32, 32)).detach()
    assert y.shape == (2, 3, 32, 32) and float(y.min()) > 0 and float(y.max()) < 1   # sigmoid output


def test_glorot_initialisation():
    torch.manual_seed(0)
    net = autoencoder.ConvAE()
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            w = m.weight.detach().abs().max().item()
            assert 0.9 * bound < w <= bound
            assert m.bias.detach().abs().max().item() == 0.0


def test_training_lowers_the_loss_and_the_dae_sees_noise():
    """A few Adam steps lower the training loss of the batch (step raised for a short test);
    the DAE's training input differs from its target."""
    x = np.random.default_rng(0).random((16, 3, 32, 32)).astype(np.float32)
    m = autoencoder.AutoEncoderModel(seed=0, lr=1e-2)
    hist = m.fit(x, x[:4], epochs=10, batch_size=16, log=lambda s: None)   # one step per epoch, train mode
    assert hist["train_loss"][-1] < 0.9 * hist["train_loss"][0] and len(hist["val_mse"]) == 10
    d = autoencoder.AutoEncoderModel(denoising=True, seed=0)
    seen = []
    d.net.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].clone()) if mod.training else None)
    d.fit(x, x[:0], epochs=1, batch_size=16, log=lambda s: None)
    inp = seen[0].numpy()                                                   # a shuffled batch of x + noise
    resid = (inp[:, None] - x[None]).reshape(16, 16, -1).std(axis=2).min(axis=1)   # to its own clean image
    np.testing.assert_allclose(resid, 0.1, rtol=0.1)


def test_the_larger_code_variant_is_only_asked_for():
    """blocks < 5 (bench/ae_convergence.py's measuring variant, not the paper's) leaves a larger code; the
    default, which the reproduction uses, is the paper's five blocks and 1x1x32 code."""
    assert autoencoder.AutoEncoderModel().net.n_trainable() == autoencoder.PAPER_PARAMETERS
    net = autoencoder.ConvAE(blocks=3)
    assert net.encoder(torch.rand(2, 3, 32, 32)).shape == (2, 32, 4, 4)        # 512 numbers per image
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_cosine_annealing_steps_every_update_from_lr_towards_zero():
    """decay="cosine": update t of `total` takes Adam's step lr (1 + cos(pi t / total)) / 2, set before each
    update (so across epochs, by the update's number in the whole run); decay=None keeps lr throughout."""
    assert autoencoder.step_size(3e-3, None, 7, 10) == 3e-3
    assert autoencoder.step_size(3e-3, "cosine", 0, 10) == 3e-3
    np.testing.assert_allclose(autoencoder.step_size(3e-3, "cosine", 5, 10), 1.5e-3, rtol=1e-12)
    x = np.random.default_rng(0).random((12, 3, 32, 32)).astype(np.float32)
    for decay in (None, "cosine"):
        m = autoencoder.AutoEncoderModel(seed=0, lr=3e-3, decay=decay)
        taken, step = [], m.opt.step
        m.opt.step = lambda *a, **k: (taken.append(m.opt.param_groups[0]["lr"]), step(*a, **k))[1]
        m.fit(x, x[:2], epochs=3, batch_size=5, log=lambda s: None)       # 3 updates per epoch: 9
        want = [autoencoder.step_size(3e-3, decay, t, 9) for t in range(9)]
        assert taken == want
        if decay:
            assert all(a > b for a, b in zip(taken, taken[1:])) and taken[-1] < 0.05 * taken[0]
    with pytest.raises(ValueError, match="decay must be one of"):
        autoencoder.AutoEncoderModel(decay="linear")
