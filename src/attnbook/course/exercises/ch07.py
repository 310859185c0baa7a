"""Chapter 7 exercises: patches, attention rollout, position-embedding similarity, a ViT that trains."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from attnbook.course import check
from attnbook.course.exercises._trial import result_tensor, run_trial, train_steps, trial_result
from attnbook.vit import attention_rollout, patchify

__all__ = ["check_patchify", "check_rollout", "check_similarity", "check_vit"]


def check_patchify(cut: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``cut(images, p)``: non-overlapping p x p patches, row by row, each flattened as (C, p, p).

    Shapes: images (B, C, H, W) -> (B, (H / p) * (W / p), C * p * p).
    """
    cases = []
    for seed, (B, C, H, W, p) in enumerate([(1, 1, 4, 4, 2), (2, 1, 6, 9, 3), (2, 3, 8, 4, 4)]):
        x = torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(seed))
        cases.append(((x, p), patchify(x, p)))
    check.cases(cut, cases, "Exercise 7.1 (images to patches)", atol=0.0, rtol=0.0)


def check_rollout(rollout: Callable[[list[torch.Tensor]], torch.Tensor]) -> None:
    """``rollout(weights)``: average heads, add the identity, renormalise rows, multiply across layers.

    Shapes: a list of (B, heads, T, T) attention tensors -> (B, T, T).
    """
    cases = []
    for seed, (L, B, nh, T) in enumerate([(1, 1, 1, 3), (2, 2, 2, 4), (4, 1, 3, 5)]):
        g = torch.Generator().manual_seed(seed)
        weights = [torch.softmax(torch.randn(B, nh, T, T, generator=g), dim=-1) for _ in range(L)]
        cases.append(((weights,), attention_rollout(weights)))
    check.cases(rollout, cases, "Exercise 7.2 (attention rollout)", atol=1e-6)


def check_similarity(similarity: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``similarity(e)``: the cosine similarity of every pair of rows of ``e``.

    Shapes: e (N, d) -> (N, N).
    """
    cases = []
    for seed, (N, d) in enumerate([(2, 3), (5, 4), (16, 8)]):
        e = torch.randn(N, d, generator=torch.Generator().manual_seed(seed))
        unit = e / e.norm(dim=-1, keepdim=True)
        cases.append(((e,), unit @ unit.T))
    check.cases(similarity, cases, "Exercise 7.3 (cosine similarity of position embeddings)", atol=1e-5)


_VIT = "Exercise 7.4 (a ViT from parts that learns where things are)"
# The task: 8 x 8 noisy images cut into four 4 x 4 patches; one patch is bright and the
# label is which one. Only the bright patch's place tells the classes apart, so a model
# blind to patch positions stays at chance (1/4).
SIDE, PATCH, CLASSES, VIT_THRESHOLD = 8, 4, 4, 0.9


def _where_batch(g: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    grid = SIDE // PATCH
    cell = torch.randint(0, grid * grid, (batch,), generator=g)  # which patch is bright
    row, col = cell // grid, cell % grid
    images = 0.3 * torch.randn(batch, 1, SIDE, SIDE, generator=g)
    for b in range(batch):
        r, c = int(row[b]) * PATCH, int(col[b]) * PATCH
        images[b, 0, r:r + PATCH, c:c + PATCH] += 1.5
    return images, cell  # the label: which patch is bright


def _shuffle_patches(images: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """The same images with their patches moved to new places (``order``: a permutation)."""
    B, C, H, W = images.shape
    grid = H // PATCH
    x = images.reshape(B, C, grid, PATCH, grid, PATCH).permute(0, 2, 4, 1, 3, 5)  # (B, r, c, C, p, p)
    x = x.reshape(B, grid * grid, C, PATCH, PATCH)[:, order]
    x = x.reshape(B, grid, grid, C, PATCH, PATCH).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, C, H, W)


def _vit_probes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Probe images, the same with their patches shuffled, and held-out task images."""
    probe, _ = _where_batch(torch.Generator().manual_seed(0), 8)
    order = torch.randperm((SIDE // PATCH) ** 2, generator=torch.Generator().manual_seed(1))
    heldout_x, _ = _where_batch(torch.Generator().manual_seed(2), 512)
    return probe, _shuffle_patches(probe, order), heldout_x


def vit_trial(make_vit: Callable[..., nn.Module], probe: torch.Tensor, shuffled: torch.Tensor,
              heldout_x: torch.Tensor, steps: int) -> dict:
    """Build and train the learner's ViT where it lives (in a graded submission: its kernel).

    ``make_vit(image_size=8, patch_size=4, d_model=32, num_heads=4, num_layers=2,
    num_classes=4)``. Returns plain data, ``{"probe", "shuffled", "heldout_logits",
    "train"}``, or ``{"problem": message}``; the package's own ``attnbook.vit.ViT`` is
    switched off meanwhile (the exercise is to build one). Raises ``NotImplementedError``
    for a stub. The verdict is :func:`check_vit`'s, from this data.
    """
    import attnbook.vit

    def refuse(*args, **kwargs):
        raise RuntimeError("attnbook.vit.ViT is not allowed here: build the model from its parts")

    original = attnbook.vit.ViT.__init__
    attnbook.vit.ViT.__init__ = refuse
    try:
        with torch.random.fork_rng():  # the caller's random state is left as it was
            torch.manual_seed(0)
            try:
                model = make_vit(image_size=SIDE, patch_size=PATCH, d_model=32, num_heads=4, num_layers=2,
                                 num_classes=CLASSES)
            except NotImplementedError:
                raise
            except Exception as err:  # noqa: BLE001 - the learner's failure is reported, not raised
                return {"problem": f"building the model raised {type(err).__name__}: {err}"}
            if not isinstance(model, nn.Module):
                got = type(model).__name__
                return {"problem": f"expected make_vit(...) to return an nn.Module, got {got}"}
            try:
                model.eval()
                with torch.no_grad():
                    out, out_shuffled = model(probe), model(shuffled)
                g = torch.Generator().manual_seed(3)
                train = train_steps(model, lambda: _where_batch(g, 32),
                                    lambda m, x, y: nn.functional.cross_entropy(m(x), y), steps)
                with torch.no_grad():
                    logits = model(heldout_x)
            except NotImplementedError:
                raise
            except Exception as err:  # noqa: BLE001
                return {"problem": f"running the model on images of shape {tuple(probe.shape)} raised "
                                   f"{type(err).__name__}: {err}"}
    finally:
        attnbook.vit.ViT.__init__ = original
    return {"probe": out.detach(), "shuffled": out_shuffled.detach(), "heldout_logits": logits.detach(),
            "train": train}


def check_vit(make_vit: Callable[..., nn.Module], *, steps: int = 150) -> dict[str, float]:
    """``make_vit(image_size, patch_size, d_model, num_heads, num_layers, num_classes)`` -> a ViT.

    Three checks: (1) the model maps (B, 1, 8, 8) images to (B, 4) logits; (2) it
    depends on where each patch is (moving the patches around changes the output: a
    model without position embeddings cannot tell); (3) it **trains**: after ``steps``
    AdamW steps (batch 32, lr 3e-3) on "which of the four patches is bright?" its held-out accuracy is
    at least ``VIT_THRESHOLD`` (chance 0.25). ``attnbook.vit.ViT`` itself is refused.
    Returns the accuracy and the last training loss.

    The model runs in :func:`vit_trial`; when grading, that runs in the submission's
    kernel and only its outputs come back, so the verdict is computed here, from data.
    """
    if not callable(make_vit):
        raise TypeError(f"expected a class or function make_vit(...), got {type(make_vit).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"expected steps to be a positive int, got {steps!r}")
    probe, shuffled, heldout_x = _vit_probes()
    result = run_trial(make_vit, vit_trial, _VIT, probe, shuffled, heldout_x, steps)
    return _judge_vit(result, probe, heldout_x, steps)


def _judge_vit(result: dict, probe: torch.Tensor, heldout_x: torch.Tensor, steps: int) -> dict[str, float]:
    result = trial_result(result, _VIT)
    outputs = {key: result_tensor(result, key, (rows, CLASSES), _VIT)
               for key, rows in (("probe", len(probe)), ("shuffled", len(probe)), ("heldout_logits", len(heldout_x)))}
    moved = (outputs["probe"] - outputs["shuffled"]).abs().max().item()
    if not moved > 1e-4:
        raise check.CheckFailed(f"{_VIT}: moving the patches to other places leaves the output unchanged (by "
                                f"{moved:.2g}): the model cannot tell where a patch is. Are the position "
                                "embeddings missing?")
    _, labels = _where_batch(torch.Generator().manual_seed(2), len(heldout_x))
    accuracy = (outputs["heldout_logits"].argmax(-1) == labels).float().mean().item()
    check.at_least(accuracy, VIT_THRESHOLD, f"{_VIT}: held-out accuracy after {steps} steps (chance 0.25)")
    train = result.get("train")
    return {"accuracy": accuracy, "train": float(train) if isinstance(train, (int, float)) else float("nan")}


def _rollout_without_identity(weights):
    result = None
    for w in weights:
        a = w.mean(dim=1)
        result = a if result is None else a @ result
    return result


class _NoPositions(nn.Module):
    """A likely wrong ViT: patch embedding, class token and blocks, but no position embeddings."""

    def __init__(self, image_size, patch_size, d_model, num_heads, num_layers, num_classes):
        super().__init__()
        from attnbook.layers import Block, BlockConfig
        self.p = patch_size
        self.embed = nn.Linear(patch_size * patch_size, d_model)
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, d_model))
        self.blocks = nn.ModuleList(Block(BlockConfig(d_model, num_heads)) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def tokens(self, images):
        x = self.embed(patchify(images, self.p))  # (B, N, d)
        return torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)  # (B, 1 + N, d)

    def forward(self, images):
        x = self.tokens(images)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


class _PositionsAfterTheBlocks(_NoPositions):
    """A likely wrong ViT: position embeddings added to the blocks' output, too late to be attended to."""

    def __init__(self, image_size, patch_size, d_model, num_heads, num_layers, num_classes):
        super().__init__(image_size, patch_size, d_model, num_heads, num_layers, num_classes)
        self.pos = nn.Parameter(0.02 * torch.randn(1, 1 + (image_size // patch_size) ** 2, d_model))

    def forward(self, images):
        x = self.tokens(images)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm((x + self.pos)[:, 0]))


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_patchify": [("patches column by column", lambda x, p: patchify(x.transpose(-2, -1), p))],
    "check_rollout": [("no identity for the residual stream", _rollout_without_identity)],
    "check_similarity": [("dot products, not cosines", lambda e: e @ e.T)],
    "check_vit": [("no position embeddings", _NoPositions, "position embeddings"),
                  ("position embeddings added after the blocks", _PositionsAfterTheBlocks,
                   "position embeddings")],
}
