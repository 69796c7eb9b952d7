"""The model library: everything between an image and its style code, apart from training.

``encoder`` (the style encoder and its branches), ``checkpoint`` (writing and reading
checkpoints, rebuilding their encoder), ``baselines`` (the registry of untrained and pretrained
descriptors), ``embedder`` (the one embedder and its resize policy), ``fuse`` (fused codes) and
``factory`` (a model by checkpoint or baseline name). Training (``train``), evaluation
(``evaluation``), tagging and the Python API (``stylecode``) build on it; it imports none of them.
"""
