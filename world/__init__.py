"""The synthetic world of the embedded default: seeded content "photos" in categories and style
groups painted by parametric techniques (``generate``: the world and its manifests; ``scenes``:
the content drawings; ``painting``: the techniques; ``imaging``: numpy image helpers)."""
