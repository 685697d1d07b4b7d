"""Click-to-label desktop tool for tiny, dim infrared point targets.

``python -m landmark_annotation IMAGES_DIR``; see README.md in this folder. The state and file
handling (``session``), snapping (``snap``) and display windowing (``display``) need no display.
"""
