"""Monotonic alignment between a signal and its labels: a synthetic stand-in for speech.

In speech recognition the input is a long sequence of audio frames and the output a
much shorter sequence of sounds or letters, in the same order: the alignment between
them moves forward only. :func:`tone_sequences` makes such data offline. Each label
is a tone of its own frequency that lasts a random number of frames; the frames of the
noisy waveform are turned into magnitude spectra (a tiny spectrogram), which a model
must transcribe back into the labels. :func:`monotonic_share` measures how far an
attention path moves forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attnbook import _validate
from attnbook.scoring import padding_mask

__all__ = ["ToneBatch", "tone_sequences", "alignment_path", "monotonic_share"]


@dataclass
class ToneBatch:
    """A batch of synthetic tone sequences.

    Attributes:
        waveform: (B, T_max * frame_size) the noisy signal, zero after its end.
        frames: (B, T_max, frame_size // 2 + 1) magnitude spectrum of every frame, zero on padding.
        lengths: (B,) number of real frames.
        labels: (B, K_max) label of every segment (0 .. num_labels - 1), -1 on padding.
        num_labels: (B,) number of segments.
        bounds: (B, K_max, 2) first and one-past-last frame of every segment, -1 on padding.
    """

    waveform: torch.Tensor
    frames: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    num_labels: torch.Tensor
    bounds: torch.Tensor


def tone_sequences(count: int, *, num_classes: int = 6, min_labels: int = 3, max_labels: int = 6,
                   min_frames: int = 3, max_frames: int = 7, frame_size: int = 16, noise: float = 0.5,
                   generator: torch.Generator | None = None) -> ToneBatch:
    """Random label sequences, each label a tone lasting ``min_frames..max_frames`` frames.

    Label ``k`` is a sine wave with ``k + 1`` periods per frame, a random phase and a
    random loudness (0.5 to 1.5), plus Gaussian noise of standard deviation ``noise``.
    Neighbouring labels differ, so every segment border is a change of tone.

    Shape:
        -> a :class:`ToneBatch`, with T_max = max_labels * max_frames and K_max = max_labels
    """
    for name, value in (("count", count), ("num_classes", num_classes), ("min_labels", min_labels),
                        ("max_labels", max_labels), ("min_frames", min_frames), ("max_frames", max_frames),
                        ("frame_size", frame_size)):
        _validate.positive_int(value, name)
    if min_labels > max_labels or min_frames > max_frames:
        raise ValueError(f"expected min <= max, got labels {min_labels}..{max_labels} and frames "
                         f"{min_frames}..{max_frames}")
    if num_classes < 2:
        raise ValueError(f"expected at least 2 classes (neighbouring labels differ), got {num_classes}")
    if num_classes + 1 > frame_size // 2:
        raise ValueError(f"expected num_classes + 1 <= frame_size // 2 so every tone has its own frequency bin, got "
                         f"num_classes={num_classes} and frame_size={frame_size}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
        raise ValueError(f"expected a noise level >= 0, got {noise!r}")
    g = generator
    K, T_max = max_labels, max_labels * max_frames
    n_labels = torch.randint(min_labels, max_labels + 1, (count,), generator=g)  # (B,)
    draws = torch.randint(0, num_classes - 1, (count, K), generator=g)  # (B, K)
    classes = draws.clone()
    for j in range(1, K):  # any class but the previous one: skip over it
        classes[:, j] = draws[:, j] + (draws[:, j] >= classes[:, j - 1]).long()
    durations = torch.randint(min_frames, max_frames + 1, (count, K), generator=g)  # (B, K)
    phase = 2 * torch.pi * torch.rand(count, K, generator=g)  # (B, K)
    loudness = 0.5 + torch.rand(count, K, generator=g)  # (B, K)
    real_label = padding_mask(n_labels, K)  # (B, K): True on each sequence's labels
    durations = durations * real_label  # padding segments last zero frames
    ends = durations.cumsum(1)  # (B, K)
    starts = ends - durations
    lengths = ends[:, -1]  # (B,)
    sample = torch.arange(T_max * frame_size)  # (S,)
    segment = (sample[None, None, :] >= (ends * frame_size)[:, :, None]).sum(1).clamp(max=K - 1)  # (B, S)
    k = classes.gather(1, segment)  # (B, S): the class of the tone playing at each sample
    offset = sample[None, :] - starts.gather(1, segment) * frame_size  # (B, S): samples since the segment began
    wave = loudness.gather(1, segment) * torch.sin(2 * torch.pi * (k + 1) * offset / frame_size
                                                   + phase.gather(1, segment))  # (B, S)
    real = padding_mask(lengths * frame_size, sample.shape[0]).float()  # (B, S): 1 on the signal, 0 after
    wave = (wave + noise * torch.randn(wave.shape, generator=g)) * real
    frames = torch.fft.rfft(wave.view(count, T_max, frame_size), dim=-1).abs()  # (B, T_max, frame_size // 2 + 1)
    frames = frames / frame_size * 2  # a full-loudness tone gives about 1 in its bin
    labels = classes.masked_fill(~real_label, -1)  # (B, K)
    bounds = torch.stack([starts, ends], dim=-1).masked_fill(~real_label[..., None], -1)  # (B, K, 2)
    return ToneBatch(wave, frames, lengths, labels, n_labels, bounds)


def alignment_path(weights: torch.Tensor) -> torch.Tensor:
    """The input position each output step attends to most (its attention peak).

    Shape:
        weights: (..., T_out, T_in) -> (..., T_out) indices into T_in
    """
    _validate.tensor(weights, "weights", floating=True)
    if weights.dim() < 2:
        raise ValueError(f"expected weights of shape (..., T_out, T_in), got {tuple(weights.shape)}")
    return weights.argmax(dim=-1)


def monotonic_share(path: torch.Tensor, steps: torch.Tensor | None = None) -> float:
    """Share of consecutive output steps whose attention peak does not move backwards.

    ``path[..., t + 1] >= path[..., t]`` counts as monotonic. With ``steps``, only the
    first ``steps[b]`` outputs of row ``b`` count (the rest are padding).

    Shape:
        path: (B, T_out) integer positions; steps: (B,) or None -> a float in [0, 1]
    """
    _validate.tensor(path, "path", ndim=2, integer=True)
    B, T = path.shape
    if T < 2:
        raise ValueError(f"expected at least 2 output steps to compare, got shape {tuple(path.shape)}")
    forward = path[:, 1:] >= path[:, :-1]  # (B, T - 1)
    if steps is None:
        return float(forward.float().mean())
    _validate.lengths(steps, B, T, "steps")
    counted = torch.arange(1, T, device=path.device)[None, :] < steps[:, None]  # (B, T - 1): both steps real
    if not bool(counted.any()):
        raise ValueError("expected at least one row with 2 or more steps, got none")
    return float(forward[counted].float().mean())
