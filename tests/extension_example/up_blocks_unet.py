"""A model adapter: a reference_unet-format model whose capture reads only the decoder (up-block) layers.

Folder layout: as ``reference_unet`` (``unet/``, ``image_encoder/``, ``i2i_config.json``, ``vae/``), which it
loads, samples and tokenises as that adapter does; the capture is the contract's default (diffusers processors) on
the layers :meth:`capture_layers` names.
"""

from benchmark.adapters.reference_unet import ReferenceUNetAdapter
from benchmark.capture import cross_attention_layers


class UpBlocksUNetAdapter(ReferenceUNetAdapter):
    def capture_layers(self) -> list[str]:
        return [k for k in cross_attention_layers(self.capture_module()) if k.startswith("up_blocks.")]
