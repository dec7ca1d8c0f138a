"""Import-only stub of ``flair`` (cap-lightning, scripts/setup_textattack.sh).

textattack 0.3.11 imports flair at module level (``shared/attacked_text.py``, ``shared/utils/strings.py``) but only
uses it for POS/NER constraints. The real flair pins ``transformers<5`` and fails to import beside transformers 5, so
this stub provides the names textattack imports; using any of them raises :class:`FlairUnavailableError`.
"""

from flair import data, models
from flair.data import FlairUnavailableError

__version__ = "0.0.0+cap.stub"
device = "cpu"  # textattack assigns ``flair.device``

__all__ = ["FlairUnavailableError", "data", "device", "models"]
