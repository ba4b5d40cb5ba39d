"""Every measured table by its CLI name (`python -m minidiff bench NAME`); each table owns its defaults."""

from __future__ import annotations

from .classifier_guidance import CLASSIFIER_GUIDANCE
from .edict import EDICT
from .edit import EDIT
from .eta_grid import ETA_GRID
from .hspace_shapes import HSPACE
from .latent import AUTOENCODER, QUALITY
from .null_text import NULL_TEXT
from .prompt_accuracy import PROMPT_ACCURACY
from .roundtrip import CFG_INVERSION, ROUNDTRIP
from .tables import BenchCommand
from .translation import LANGEVIN, NOISE_RECONSTRUCTION, TRANSLATION

TABLES: dict[str, BenchCommand] = {t.name: t for t in (
    PROMPT_ACCURACY, ROUNDTRIP, CFG_INVERSION, ETA_GRID, CLASSIFIER_GUIDANCE, EDIT, NULL_TEXT, AUTOENCODER, QUALITY,
    EDICT, NOISE_RECONSTRUCTION, TRANSLATION, LANGEVIN, HSPACE)}
