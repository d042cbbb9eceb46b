import torch
import torch.nn.functional as F

from dragdiff.drag.optimise import drag_latent
from dragdiff.motion import motion_supervision_loss, sample


def gaussian_bump(height=32, width=32, channels=8, center=(10, 10), seed=0):
    """A latent whose features (the identity map) carry a distinctive bump at `center`."""
    generator = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    bump = torch.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2 * 3.0**2))
    return (torch.randn(channels, 1, 1, generator=generator) * bump)[None]


def test_sample_is_exact_on_integer_positions():
    features = torch.randn(1, 3, 5, 7)
    points = torch.tensor([[[0.0, 0.0], [4.0, 6.0], [2.0, 3.0]]])
    assert torch.allclose(sample(features, points)[:, 0], features[0][:, [0, 4, 2], [0, 6, 3]])


def test_loss_is_zero_for_reached_pairs_and_positive_otherwise():
    features = torch.randn(1, 4, 16, 16)
    handles = torch.tensor([[5, 5], [8, 8]])
    assert motion_supervision_loss(features, handles, handles.float(), 1, 2.0) == 0
    assert motion_supervision_loss(features, handles, handles.float() + 5, 1, 2.0) > 0


def test_motion_supervision_drags_a_synthetic_feature_to_its_target():
    """On a differentiable feature map (features = latent) the tracked handles end within 1 px of the targets."""
    latent = gaussian_bump(center=(10, 10)) + gaussian_bump(center=(24, 20), seed=1)
    handles = torch.tensor([[10.0, 10.0], [24.0, 20.0]])
    targets = torch.tensor([[10.0, 22.0], [16.0, 12.0]])  # one horizontal, one diagonal drag
    trace = drag_latent(
        latent,
        lambda z, with_penalty: (z, None),
        handles,
        targets,
        steps=300,
        lr=0.2,
        motion_radius=1,
        tracking_radius=3,
        stop_distance=1.0,
    )
    distance = (trace.handles[-1].float() - targets).norm(dim=1)
    assert trace.reached and (distance <= 1.0).all(), (trace.steps, trace.handles[-1].tolist())
    assert trace.steps > 10  # it really moved, step by step


def test_penalty_and_motion_losses_are_both_optimised():
    latent = gaussian_bump()
    anchor = latent.clone()

    def with_penalty(z, wanted):
        return z, 100 * (z - anchor).abs().sum() if wanted else None  # a heavy penalty holds everything in place

    trace = drag_latent(
        latent,
        with_penalty,
        torch.tensor([[10.0, 10.0]]),
        torch.tensor([[10.0, 22.0]]),
        steps=50,
        lr=0.2,
        motion_radius=1,
        tracking_radius=3,
        stop_distance=1.0,
    )
    free = drag_latent(
        latent,
        lambda z, with_penalty: (z, None),
        torch.tensor([[10.0, 10.0]]),
        torch.tensor([[10.0, 22.0]]),
        steps=50,
        lr=0.2,
        motion_radius=1,
        tracking_radius=3,
        stop_distance=1.0,
    )
    assert F.l1_loss(trace.latent, anchor) < 0.5 * F.l1_loss(free.latent, anchor)


def test_a_handle_on_its_target_adds_nothing_even_with_no_stopping_distance():
    """With min_distance 0 a zero-length pair once gave direction / 0 = NaN, and grid_sample read out of
    bounds on the NaN grid (a segfault)."""
    features = torch.randn(1, 4, 16, 16, requires_grad=True)
    handles = torch.tensor([[5, 5], [8, 8]])
    targets = torch.tensor([[5.0, 5.0], [8.0, 12.0]])  # the first pair is on its target
    loss = motion_supervision_loss(features, handles, targets, 1, 0.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(features.grad).all()
    assert torch.equal(loss, motion_supervision_loss(features, handles[1:], targets[1:], 1, 0.0))


def test_sample_survives_a_nan_position():
    features = torch.randn(1, 3, 5, 7)
    values = sample(features, torch.tensor([[[float("nan"), 2.0]]]))
    assert values.shape == (3, 1, 1)
