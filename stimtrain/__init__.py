"""stimtrain: neurostimulation-plus-training sessions on one clock."""

__version__ = "0.1.0"
