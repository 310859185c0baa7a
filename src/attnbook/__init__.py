"""attnbook: the companion package of the course book on attention mechanisms.

One module per concept; the chapter notebooks import from here, so the package
is the single source of truth for every model, task and check in the book.
"""

from attnbook import check
from attnbook.device import pick_device

__version__ = "0.1.0"
__all__ = ["check", "pick_device", "__version__"]
