"""The plumbing the commands share, below the command packages and above the library: the Lightning Trainer of a
predict run (trainer.py), the shared command-line options (options.py), atomic output files (files.py), the rich
progress bar (progress.py), the held-out test images of a prior (heldout.py), the fixed batches of a run sharded
over the ranks (shard.py), and stopping on SIGTERM and SIGINT without orphaned ranks (signals.py). Nothing here
imports a command package."""
