"""Views of attention for the chapters: plots, and BertViz's interactive views.

- :mod:`attnbook.viz.plotting`: matplotlib figures the chapters share (attention
  heatmaps, learning curves, accuracy by length).
- :mod:`attnbook.viz.bertviz`: BertViz's head view and model view as HTML that draws
  with or without a network, with PNG fallbacks.
- :mod:`attnbook.viz.assets`: where a view's libraries come from (cdn, inline, static).
- :mod:`attnbook.viz.templating`: the views' HTML and JavaScript, kept as package data
  in ``attnbook/viz/templates/`` and filled with :class:`string.Template`.

Import from the submodules (``from attnbook.viz.bertviz import head_view_html``), so
that a chapter drawing only heatmaps does not load the BertViz code, and the other way
round.
"""
