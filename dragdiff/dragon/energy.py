"""Energy terms of DragonDiffusion's feature-correspondence guidance, on decoder feature maps (B, C, h, w).

Every term is built from the channel cosine similarity s of feature vectors: w / (1 + 4·s) when the features
should correspond (it falls as s rises) and w·(s + 1)/2 when they should not (it rises with s), as the
official implementation does (docs/dragondiffusion.md, "Energies"). Lower energy = better edit; the sampler descends it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def match(weight: float, similarity: torch.Tensor) -> torch.Tensor:
    """Energy of features that should correspond, from their cosine similarities (any shape)."""
    return weight / (1 + 4 * similarity.mean())


def contrast(weight: float, similarity: torch.Tensor) -> torch.Tensor:
    """Energy of features that should differ (e.g. the object left at its old place)."""
    return weight * (similarity.mean() + 1) / 2


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Channel cosine similarity of (B, C, h, w) maps -> (B, h, w), or of (..., C) vectors -> (...)."""
    return F.cosine_similarity(a, b, dim=1 if a.dim() == 4 else -1)


def masked_mean(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean feature vector (B, C) over the True cells of a (h, w) mask."""
    weights = mask.to(features.dtype)
    return (features * weights).sum((2, 3)) / weights.sum().clamp_min(1)


def region_match(weight: float, current: torch.Tensor, source: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per-cell correspondence of `current` to `source` inside `region` ((h, w) bool); 0 when it is empty."""
    if not region.any():
        return current.sum() * 0
    return match(weight, cosine(current, source)[:, region])


def move_energy(current, original, moved_source, object_mask, moved_mask, surround, w) -> tuple:
    """Object move/resize (and paste, without the vacated-region terms).

    current: generation features; original: the guidance branch's; moved_source: the original warped so
    that the object sits in its new box; object_mask/moved_mask: the object's old and new cells; surround:
    cells around the old place, whose mean the vacated region should look like. Returns (edit, content).
    """
    edit = region_match(w["edit"], current, moved_source, moved_mask)
    vacated = object_mask & ~moved_mask
    if vacated.any():
        edit = edit + contrast(w["contrast"], cosine(current, original)[:, vacated])
        if surround.any():
            edit = edit + match(w["inpaint"], cosine(masked_mean(current, vacated), masked_mean(original, surround)))
    content = region_match(w["content"], current, original, ~(object_mask | moved_mask))
    return edit, content


def drag_energy(current, original, handles, targets, editable, w, radius: int = 1) -> tuple:
    """Content drag: the (2r+1)² patch at each target matches the original patch at its handle; handle-only
    patches look like the rest of the editable region; outside `editable` nothing changes.

    handles/targets: (P, 2) long (row, col) feature-grid cells. Returns (edit, content).
    """
    height, width = current.shape[-2:]
    target_cells = torch.zeros(height, width, dtype=torch.bool, device=current.device)
    handle_cells = torch.zeros_like(target_cells)
    similarities = []
    for (hr, hc), (tr, tc) in zip(handles.tolist(), targets.tolist(), strict=True):
        h_rows, t_rows = patch_windows(hr, tr, radius, height)
        h_cols, t_cols = patch_windows(hc, tc, radius, width)
        similarities.append(cosine(current[:, :, t_rows, t_cols], original[:, :, h_rows, h_cols]).flatten())
        target_cells[t_rows, t_cols] = True
        handle_cells[h_rows, h_cols] = True
    edit = match(w["edit"], torch.cat(similarities))
    handle_only = handle_cells & ~target_cells
    rest = editable & ~handle_cells & ~target_cells
    if handle_only.any() and rest.any():
        edit = edit + match(w["inpaint"], cosine(masked_mean(current, handle_only), masked_mean(original, rest)))
    content = region_match(w["content"], current, original, ~editable)
    return edit, content


def appearance_energy(current, original, reference, base_mask, reference_mask, w) -> tuple:
    """Appearance replacement: the mean feature inside the base mask matches the reference object's mean
    feature; outside the base mask nothing changes. Returns (edit, content)."""
    edit = match(w["edit"], cosine(masked_mean(current, base_mask), masked_mean(reference, reference_mask)))
    content = region_match(w["content"], current, original, ~base_mask)
    return edit, content


def patch_windows(source: int, target: int, radius: int, size: int) -> tuple[slice, slice]:
    """Equal-size slices around `source` and `target`, both shrunk to stay inside [0, size)."""
    low = min(radius, source, target)
    high = min(radius, size - 1 - source, size - 1 - target)
    return slice(source - low, source + high + 1), slice(target - low, target + high + 1)
