"""Model adapters; importing this package registers them."""

from benchmark.adapters import reference_unet  # noqa: F401
from benchmark.adapters import paint_by_example  # noqa: F401
from benchmark.adapters import generic_unet  # noqa: F401
from benchmark.adapters import ldm_unet  # noqa: F401
from benchmark.adapters import flux_kontext  # noqa: F401
from benchmark.adapters import reference_dit  # noqa: F401

from diffusers.utils import logging as _diffusers_logging  # noqa: E402
from transformers.utils import logging as _transformers_logging  # noqa: E402

# Loading is done once per worker; per-file progress bars would drown the run's own.
_transformers_logging.disable_progress_bar()
_diffusers_logging.disable_progress_bar()
