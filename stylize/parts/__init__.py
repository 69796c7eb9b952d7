"""Parts the NST methods share; no method is registered here.

- ``vgg``: the normalised VGG19 (``vgg_normalised.pth`` layout) and its ReLU taps;
- ``adain_family``: the decoder and feature statistics shared by AdaIN, SANet, PAMA and CAST;
- ``imageops``: batched colour, pyramid, moment and histogram operations of the weight-free
  methods (and the one strength ``blend``);
- ``checkpoint``: loading published checkpoint files with errors that name file and keys.
"""
