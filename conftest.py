"""Repository-level pytest configuration.

The packrig plugin itself (options --bench, --pack-spec, --firmware, --seed and the fixtures)
is registered by the ``pytest11`` entry point of the installed distribution; nothing is
duplicated here. This file only keeps pytest's rootdir at the repository top, so ``tests/``
and ``testcases/`` import ``rig`` and ``instruments`` from this checkout.
"""
