import torch

from dragdiff.tracking import all_reached, features_at, track_points


def smooth_random_features(channels=16, height=32, width=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(1, channels, height // 4, width // 4, generator=generator)
    return torch.nn.functional.interpolate(base, (height, width), mode="bicubic", align_corners=True)[0]


def test_tracking_recovers_known_shifts_including_near_borders():
    features = smooth_random_features()
    start = torch.tensor([[5, 5], [16, 20], [0, 0], [31, 39], [30, 2]])
    shift = torch.tensor([[2, -1], [-3, 3], [1, 2], [-2, -3], [1, 1]])
    reference = features_at(features, start)
    # Move each point's feature to start + shift in a copy of the map (the rest stays), then track.
    moved = features.clone()
    for (r, c), (dr, dc) in zip(start.tolist(), shift.tolist(), strict=False):
        moved[:, r + dr, c + dc] = features[:, r, c]
        moved[:, r, c] = features[:, r, c] + 10  # the old place no longer matches
    tracked = track_points(moved, reference, start, radius=3)
    assert torch.equal(tracked, start + shift)


def test_tracking_window_is_clipped_to_the_grid():
    features = smooth_random_features()
    corner = torch.tensor([[0, 39]])
    tracked = track_points(features, features_at(features, corner), corner, radius=3)
    assert torch.equal(tracked, corner)  # found at its own place, never outside the grid


def test_stop_rule_uses_euclidean_distance():
    targets = torch.tensor([[10.0, 10.0]])
    assert all_reached(torch.tensor([[11, 11]]), targets, 2.0)  # 1.41 < 2
    assert not all_reached(torch.tensor([[12, 10]]), targets, 2.0)
