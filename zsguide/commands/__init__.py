"""The command packages, the top layer: one per ``python -m zsguide`` command that is more than Lightning's CLI
(``restore``, ``evaluate``, ``calibrate``, ``prior`` and ``test`` on a prior file, ``analyze`` and ``tune``).

Each is a thin shell over the Python API (zsguide/api.py) and the library below it, with its options, its files and
its Lightning loop; none imports another (tests/test_layers.py). What several commands share lives below them, in
zsguide/runtime/."""
