"""The keys and mouse actions, as shown in the help overlay and in ``--help`` (kept light: no imports).

Two columns for the overlay: points and display, then images, proposals and the view.
"""

POINT_KEYS = [
    ("click", "add a point (snapped to its target)"),
    ("drag point", "move it (snapped on release)"),
    ("right click point", "delete it"),
    ("Delete", "remove the selected point"),
    ("arrows (selected)", "nudge 0.1 px; Shift: 1 px"),
    ("x", "flag the selected point uncertain"),
    ("Ctrl+Z / Ctrl+Y", "undo / redo"),
    ("c", "snapping on / off"),
    ("[ / ]", "snap radius smaller / larger"),
    ("1 / 2", "window low percentile down / up"),
    ("3 / 4", "window high percentile down / up"),
    ("5 / 6", "gamma down / up"),
    ("m", "colour map"),
    ("w", "window on the visible area"),
    ("b", "window on a box at the cursor"),
    ("t", "background-subtracted view"),
    ("0", "reset display"),
]
IMAGE_KEYS = [
    ("d / a (Right/Left)", "next / previous image"),
    ("u", "next unlabelled image"),
    ("g", "go to image number"),
    ("l", "file list with each image's state"),
    ("v", "review one state (d / a step)"),
    ("n", "no target here (writes 0)"),
    ("s", "save (edits are saved at once)"),
    ("Enter", "accept the proposals (magenta)"),
    ("j", "accept proposals, next image"),
    (", / .", "proposal threshold down / up"),
    ("wheel", "zoom at the cursor (up to 64x)"),
    ("right/middle drag", "pan (also space + left drag)"),
    ("f", "fit the image to the window"),
    ("+ / -", "zoom in / out at the centre"),
    ("Esc", "deselect / close this help"),
    ("? / F1", "this help"),
    ("Ctrl+Q", "quit"),
]
KEYS = POINT_KEYS + IMAGE_KEYS
