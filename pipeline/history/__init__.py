"""The context tower's stage: which form fits the data (probe.py) and the tower's training (train.py)."""
