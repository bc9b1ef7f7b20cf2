"""The bottom layer: small building blocks every other sub-package may use.

``registry`` (name -> factory), ``budget`` (exact ``"8/255"`` parsing), ``seeds`` (seeding,
the one seed derivation, device choice), ``io`` (atomic writes, sha256 of files) and
``modes`` (a module's train/eval mode for the duration of a block). It imports nothing
else of ``pipeline``.
"""
