"""Defaults shared by the command line and the session (kept light: no imports)."""

# Model proposals for labelling: the model is asked for every peak scoring at least the floor, and
# those at or above the threshold are shown (keys , and . move it). The threshold leans to recall:
# meant to hold 1 false proposal per image on the shipped s model's validation split of SIRST train
# (python -m landmark_annotation.proposal_accuracy; the table is in its README). A model
# whose own threshold is lower keeps it.
PROPOSAL_FLOOR = 0.01
PROPOSAL_THRESHOLD = 0.04
