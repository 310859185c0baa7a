"""attnbook: the companion package of the course book on attention mechanisms.

One module per concept; the chapter notebooks import from here, so the package
is the single source of truth for every model, task and check in the book.

The shared building blocks: ``layers`` (LayerNorm, FeedForward, the one residual
``Block``), ``masks`` (the one causal and padding mask), ``attention`` (from-scratch and
fused attention behind one switch), ``multihead``, ``transformer`` (the one
encoder-decoder), ``training`` (the one training loop) and ``cost`` (timing, memory,
power-law fits). Course tooling lives in ``attnbook.course`` (checks, exercises, student
versions, grading, the chapter scaffold) and views in ``attnbook.viz`` (plots, BertViz).

Each chapter and the modules it uses:

     1  cost, evaluation, layers, rnn, tasks, training, viz.plotting
     2  checkpoints, cost, evaluation, layers, rnn, scoring, tasks, training,
        viz.plotting
     3  attention, cost, training, viz.plotting
     4  attention, cost, layers, positional, pretrained, training, viz.plotting
     5  attention, layers, multihead, training, viz.plotting
     6  checkpoints, gpt, layers, masks, multihead, rnn, tasks, training, transformer
     7  layers, training, vit
     8  attribution, head_patterns, heads, pretrained, sentence_embeddings, training,
        viz.bertviz
     9  attention, cost, flash, flash_triton, linear_attention, masks, multihead,
        sparse, training
    10  alignment, contacts, cost, crossmodal, gpt, layers, multihead, potts, ssm,
        tasks, text_to_image, training, vit, vocab
    11  gpt, kv_variants, layers, multihead, sparse, stability, streaming,
        training
    12  gpt, induction, layers, positional, recall, training

(``check``, ``exercises`` and ``pick_device`` are used by every chapter;
``tests/test_chapter_map.py`` keeps this map true.)
"""

from attnbook import check
from attnbook.device import pick_device

__version__ = "0.1.0"
__all__ = ["check", "pick_device", "__version__"]
