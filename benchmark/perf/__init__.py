"""``python -m benchmark perf``: measured costs. Capture overhead and memory at mini and SD-1.5 sizes
(:mod:`.capture`), every adapter at its published resolution (:mod:`.real`), and ``report`` at nightly scale on
synthetic stores (:mod:`.report`, :mod:`.synthetic_store`)."""
