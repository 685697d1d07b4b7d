"""The Tk window: turns mouse and keys into :class:`Session` calls and draws the result.

All decisions (where a click lands, what is saved, undo) are in ``session.py``; this file only
handles the view (zoom, pan, windowing), drawing and events.
"""

from __future__ import annotations

import sys
import tkinter as tk
import traceback
from tkinter import messagebox, simpledialog

import numpy as np

from landmark_annotation.display import View, Windowing, background_subtracted, box_crop, to_ppm, visible_crop
from landmark_annotation.keys import IMAGE_KEYS, POINT_KEYS
from landmark_annotation.session import REVIEW_STATES, Session
from simple_keypoint.images import percentile_window

POINT_COLOUR, SELECTED_COLOUR, PROPOSAL_COLOUR = "#00ff66", "#ffd400", "#ff40ff"
UNCERTAIN_COLOUR, CLICK_COLOUR = "#ff8c00", "#ffffff"
# The crosshair and every marker are drawn twice, a wide dark line under a light one, so they
# stand out on any colour map (a single blue or green line vanishes on jet, viridis or noise).
CROSSHAIR_COLOUR, OUTLINE_COLOUR = "#ffffff", "#000000"
# Percentile window of the background-subtracted view (low, high).
BACKGROUND_WINDOW = (50.0, 100.0)
FIXED_FONT = "TkFixedFont"  # the named font: the tuple ("TkFixedFont", 10) would be a missing family
STATE_COLOURS = {"unlabelled": "#b0b0b0", "labelled": "#00c050", "no target": "#4aa3ff", "unreadable": "#ff6060",
                 "proposals pending": "#ff40ff", "uncertain": "#ff8c00"}
# The file list: state words (short), and how many characters of each name it shows.
STATE_WORDS = {"proposals pending": "proposals"}
STATE_WIDTH = 10
FILE_NAME_MIN, FILE_NAME_MAX = 20, 36
HIT_PIXELS = 8  # a click this close (on screen) to a point grabs it instead of adding one
ZOOM_STEP = 1.25
ERROR_WORDS = ("NOT SAVED", "malformed", "unreadable", "cannot", "failed", "error", "Error")


def elide_middle(name: str, width: int) -> str:
    """``name`` cut to ``width`` characters in the middle (start and extension kept), whole if it fits."""
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return name[:width - 1 - tail] + "\u2026" + name[len(name) - tail:]


def proposal_colour(score: float, threshold: float) -> str:
    """Magenta, dimmer the closer the score is to the threshold (a weak proposal looks weak)."""
    strength = min(max((score - threshold) / max(1.0 - threshold, 1e-6), 0.0), 1.0)
    level = 0.4 + 0.6 * strength
    r, g, b = (int(PROPOSAL_COLOUR[i:i + 2], 16) for i in (1, 3, 5))
    return f"#{int(r * level):02x}{int(g * level):02x}{int(b * level):02x}"


class AnnotationApp:
    """The annotation window over a :class:`Session`."""

    def __init__(self, root: tk.Tk, session: Session, window: Windowing | None = None):
        self.root, self.session = root, session
        self.window = window or Windowing()
        self.view = View()
        self.fitted = True  # view follows the window size until the user zooms or pans
        self.levels = (0.0, 1.0)
        self.photo: tk.PhotoImage | None = None
        self.cursor: tuple[int, int] | None = None
        self.drag: int | None = None  # index of the point being dragged
        self.drag_moved = False
        self.press_at = (0, 0)
        self.pan_from: tuple[int, int] | None = None
        self.space_down = False
        self.help_shown = False
        self.help_too_tall = False
        self.help_scroll = 0  # pixels the help is scrolled up when taller than the canvas
        self.review_filter: str | None = None  # step with d/a only through images in this state
        self.display_gray: np.ndarray | None = None  # what is shown: the image or its background-subtracted view
        self.box_at: tuple[float, float] | None = None
        self._window_before_background = (self.window.low, self.window.high)
        self._file_indices: list[int] = []
        self._files_drawn: tuple[list, int] | None = None
        self._redraw_pending = False
        self._rendered_key: tuple | None = None
        self._rendered_at = (0, 0)
        self._image_levels: tuple[tuple, tuple[float, float]] | None = None  # the whole image's, cached
        self._image_serial = 0  # changes on every navigation: a new image is always rendered anew

        root.title("landmark annotation")
        root.report_callback_exception = self._on_exception
        root.protocol("WM_DELETE_WINDOW", self.quit)
        # The bars are packed first, at the bottom, so a small window shrinks the canvas, never
        # cuts a two-line message.
        self.message = tk.Label(root, anchor="w", justify="left", font=FIXED_FONT, bg="#2a2a2a", fg="#e0e0e0")
        self.message.pack(side="bottom", fill="x")
        self.status = tk.Label(root, anchor="w", justify="left", font=FIXED_FONT, bg="#2a2a2a", fg="#e0e0e0")
        self.status.pack(side="bottom", fill="x")
        self.files = tk.Listbox(root, width=30, font=FIXED_FONT, bg="#202020", fg="#e0e0e0", activestyle="none",
                                exportselection=False, takefocus=0)
        self.files.bind("<<ListboxSelect>>", self._on_file_pick)
        self.files.bind("<Motion>", self._on_files_motion)
        self.files.bind("<Leave>", lambda e: self.file_tip.place_forget())
        self.file_tip = tk.Label(root, font=FIXED_FONT, bg="#fff8c0", fg="#000000", bd=1, relief="solid")
        self._file_names: list[str] = []
        self.files_shown = False
        self.canvas = tk.Canvas(root, bg="#181818", highlightthickness=0, width=960, height=640, cursor="tcross")
        self.canvas.pack(side="left", fill="both", expand=True)
        self._bind()
        self.canvas.focus_set()

    # ---- events --------------------------------------------------------------------------------
    def _bind(self) -> None:
        c, r = self.canvas, self.root
        c.bind("<Configure>", self._on_configure)
        c.bind("<Motion>", self._on_motion)
        c.bind("<Leave>", lambda e: self._set_cursor(None))
        c.bind("<ButtonPress-1>", self._on_press1)
        c.bind("<B1-Motion>", self._on_drag1)
        c.bind("<ButtonRelease-1>", self._on_release1)
        c.bind("<ButtonPress-3>", self._on_press3)
        c.bind("<ButtonPress-2>", self._start_pan)
        for button in (2, 3):
            c.bind(f"<B{button}-Motion>", self._on_pan)
            c.bind(f"<ButtonRelease-{button}>", self._end_pan)
        c.bind("<MouseWheel>", lambda e: self.wheel(e.x, e.y, 1 if e.delta > 0 else -1))
        c.bind("<Button-4>", lambda e: self.wheel(e.x, e.y, 1))
        c.bind("<Button-5>", lambda e: self.wheel(e.x, e.y, -1))
        keys = {
            "d": self.next, "a": self.previous, "u": self.next_unlabelled, "g": self.ask_goto,
            "s": self.save, "n": lambda: self._edit(self.session.no_target), "f": self.fit,
            "Return": self.accept, "KP_Enter": self.accept, "j": self.accept_and_next,
            "comma": lambda: self._proposals(-1), "period": lambda: self._proposals(1),
            "x": lambda: self._edit(self.session.toggle_uncertain),
            "w": lambda: self.window_on("visible"), "b": lambda: self.window_on("box"), "t": self.toggle_background,
            "l": self.toggle_files, "v": self.cycle_filter,
            "Control-z": self.undo, "Control-y": self.redo, "Control-Z": self.redo,
            "Delete": lambda: self._edit(self.session.delete), "BackSpace": lambda: self._edit(self.session.delete),
            "Escape": self.escape, "question": self.toggle_help, "F1": self.toggle_help,
            "Control-q": self.quit,
            "c": self.toggle_snap, "bracketleft": lambda: self.snap_radius(-1), "bracketright": lambda: self.snap_radius(1),
            "1": lambda: self._display(self.window.step_low, -1), "2": lambda: self._display(self.window.step_low, 1),
            "3": lambda: self._display(self.window.step_high, -1), "4": lambda: self._display(self.window.step_high, 1),
            "5": lambda: self._display(self.window.step_gamma, -1), "6": lambda: self._display(self.window.step_gamma, 1),
            "m": lambda: self._display(self.window.next_colormap), "0": self.reset_display,
            "plus": lambda: self.zoom_centre(ZOOM_STEP), "equal": lambda: self.zoom_centre(ZOOM_STEP),
            "KP_Add": lambda: self.zoom_centre(ZOOM_STEP), "minus": lambda: self.zoom_centre(1 / ZOOM_STEP),
            "KP_Subtract": lambda: self.zoom_centre(1 / ZOOM_STEP),
        }
        for key, action in keys.items():
            r.bind(f"<{'Key-' if len(key) == 1 else ''}{key}>", lambda e, a=action: (a(), "break")[1])
        for key, (du, dv) in {"Left": (-1, 0), "Right": (1, 0), "Up": (0, -1), "Down": (0, 1)}.items():
            r.bind(f"<{key}>", lambda e, d=(du, dv): self.arrow(d, 0.1))
            r.bind(f"<Shift-{key}>", lambda e, d=(du, dv): self.arrow(d, 1.0))
        r.bind("<KeyPress-space>", lambda e: setattr(self, "space_down", True))
        r.bind("<KeyRelease-space>", lambda e: setattr(self, "space_down", False))

    def _on_exception(self, kind: type[BaseException], value: BaseException, tb: object) -> None:
        """A bug in a callback is shown in the window (and printed), never a silent or fatal failure."""
        traceback.print_exception(kind, value, tb)  # type: ignore[arg-type]
        self.session.message = f"internal error: {kind.__name__}: {value} (edits so far are saved)"
        self.redraw()

    def _image_xy(self, x: float, y: float) -> tuple[float, float]:
        return self.view.to_image(x, y)

    def _on_configure(self, event: tk.Event) -> None:
        self.view.canvas = (max(event.width, 1), max(event.height, 1))
        self.message.config(wraplength=max(self.root.winfo_width() - 10, 100))
        if self.fitted:
            self.fit()
        else:
            self.redraw()

    def _on_motion(self, event: tk.Event) -> None:
        self._set_cursor((event.x, event.y))

    def _set_cursor(self, xy: tuple[int, int] | None) -> None:
        self.cursor = xy
        self._draw_crosshair()
        self._update_status()

    def _on_press1(self, event: tk.Event) -> None:
        self.canvas.focus_set()
        self.press_at = (event.x, event.y)
        if self.space_down:
            self._start_pan(event)
            return
        if not self.session.editable:
            return
        u, v = self._image_xy(event.x, event.y)
        hit = self.session.nearest(u, v, HIT_PIXELS / self.view.scale)
        if hit is not None:
            self.session.selected, self.drag, self.drag_moved = hit, hit, False
        else:
            self.session.add(u, v)
        self.redraw()

    def _on_drag1(self, event: tk.Event) -> None:
        if self.pan_from is not None:
            self._on_pan(event)
        elif self.drag is not None:
            if abs(event.x - self.press_at[0]) + abs(event.y - self.press_at[1]) > 2:
                self.drag_moved = True
            if self.drag_moved:
                self.session.move(self.drag, *self._image_xy(event.x, event.y), final=False)
                self.redraw()
        self._set_cursor((event.x, event.y))

    def _on_release1(self, event: tk.Event) -> None:
        if self.pan_from is not None:
            self._end_pan(event)
        elif self.drag is not None and self.drag_moved:
            self.session.move(self.drag, *self._image_xy(event.x, event.y), final=True)
            self.redraw()
        self.drag, self.drag_moved = None, False

    def _on_press3(self, event: tk.Event) -> None:
        if self.session.editable:
            hit = self.session.nearest(*self._image_xy(event.x, event.y), HIT_PIXELS / self.view.scale)
            if hit is not None:
                self.session.delete(hit)
                self.redraw()
                return
        self._start_pan(event)

    def _start_pan(self, event: tk.Event) -> None:
        self.pan_from = (event.x, event.y)

    def _on_pan(self, event: tk.Event) -> None:
        if self.pan_from is None:
            return
        self.view.pan(event.x - self.pan_from[0], event.y - self.pan_from[1])
        self.pan_from, self.fitted = (event.x, event.y), False
        self._view_changed()

    def _end_pan(self, event: tk.Event) -> None:
        self.pan_from = None

    # ---- actions -------------------------------------------------------------------------------
    def _edit(self, action: object) -> None:
        action()  # type: ignore[operator]
        self.redraw()

    def _after_navigation(self) -> None:
        self._image_serial += 1
        self.display_gray = None
        self.fit()
        self._update_levels()
        self._fill_files()

    def _shown_gray(self) -> np.ndarray | None:
        """The image as displayed: raw, or its background-subtracted view (computed once per image)."""
        if not self.session.editable:
            return None
        if self.display_gray is None:
            self.display_gray = background_subtracted(self.session.gray) if self.window.background else self.session.gray
        return self.display_gray

    def region(self) -> str:
        """Where the window's percentiles are taken now: zoomed in, the whole image's window
        follows the view (the visible area), so a faint target's neighbourhood fills the range."""
        if self.window.region == "image" and not self.fitted:
            return "visible"
        return self.window.region

    def _update_levels(self) -> None:
        """Display levels from the percentiles of the whole image, the visible area or the box."""
        gray = self._shown_gray()
        if gray is None:
            self.levels = (0.0, 1.0)
            return
        region = self.region()
        if region == "visible":
            gray = visible_crop(gray, self.view)
            step = int(np.ceil(np.sqrt(gray.size / 250_000)))  # a pan or wheel step stays quick on big frames
            gray = gray[::step, ::step]
        elif region == "box" and self.box_at is not None:
            gray = box_crop(gray, *self.box_at)
        key = (self._image_serial, self.window.background, self.window.low, self.window.high)
        if region == "image" and self._image_levels is not None and self._image_levels[0] == key:
            self.levels = self._image_levels[1]
        else:
            self.levels = percentile_window(gray, self.window.low, self.window.high)
            if region == "image":
                self._image_levels = (key, self.levels)
        self.redraw()

    def window_on(self, region: str) -> None:
        """Window on what is visible now (w) or on a box around the cursor (b); 0 resets."""
        if region == "box":
            cursor = self.cursor or (self.view.canvas[0] / 2, self.view.canvas[1] / 2)
            self.box_at = self._image_xy(*cursor)
        self.window.region = region
        self._update_levels()
        self.session.message = self.window.describe(self.region())
        self.redraw()

    def toggle_background(self) -> None:
        """t: the background-subtracted view, windowed from its median (black) to its maximum
        (white), so the brightest spot is white and pixel noise stays dark; t again goes back."""
        w = self.window
        w.background = not w.background
        if w.background:
            self._window_before_background = (w.low, w.high)
            w.low, w.high = BACKGROUND_WINDOW
        else:
            w.low, w.high = self._window_before_background
        self.display_gray = None
        self._update_levels()
        self.session.message = self.window.describe(self.region())
        self.redraw()

    def _proposals(self, direction: int) -> None:
        self.session.step_threshold(direction)
        self.redraw()

    def _step(self, direction: int) -> None:
        """d / a: the next or previous image, or, with a review filter, the next one in that state."""
        s = self.session
        if self.review_filter is None:
            s.next() if direction > 0 else s.previous()
        else:
            n = len(s.images)
            found = None
            for k in range(1, n + 1):
                i = (s.index + direction * k) % n
                if s.image_state(i) == self.review_filter:
                    found = i
                    break
            if found is None:
                s.message = f"no image is {self.review_filter}"
            else:
                s.go(found, direction)
        self._after_navigation()

    def next(self) -> None:
        self._step(1)

    def previous(self) -> None:
        self._step(-1)

    def cycle_filter(self) -> None:
        """v: review one state at a time (d / a step through it); the last step turns it off."""
        order = [None, *REVIEW_STATES]
        self.review_filter = order[(order.index(self.review_filter) + 1) % len(order)]
        self.session.message = f"review: {self.review_filter or 'all images'} (d / a step through them)"
        self._fill_files()
        self.redraw()

    def toggle_files(self) -> None:
        self.files_shown = not self.files_shown
        if self.files_shown:
            self.files.pack(side="right", fill="y", before=self.canvas)
            self._files_drawn = None
            self._fill_files()
        else:
            self.files.pack_forget()
            self.file_tip.place_forget()

    def file_lines(self) -> list[tuple[int, str, str]]:
        """The file list: (index, state, name) of each image (the filter's images only, when set)."""
        s = self.session
        rows = [(i, s.image_state(i), p.name) for i, p in enumerate(s.images)]
        return [row for row in rows if self.review_filter is None or row[1] == self.review_filter]

    def _fill_files(self) -> None:
        if not self.files_shown:
            return
        rows = self.file_lines()
        if (rows, self.session.index) == self._files_drawn:  # redraws are frequent; the list changes rarely
            return
        self._files_drawn = (rows, self.session.index)
        longest = max((len(name) for _, _, name in rows), default=0)
        width = min(max(longest, FILE_NAME_MIN), FILE_NAME_MAX)
        self.files.config(width=STATE_WIDTH + 1 + width)
        self.files.delete(0, "end")
        self._file_indices = [i for i, _, _ in rows]
        self._file_names = [name for _, _, name in rows]
        for i, state, name in rows:
            self.files.insert("end", f"{STATE_WORDS.get(state, state):<{STATE_WIDTH}} {elide_middle(name, width)}")
            self.files.itemconfig("end", fg=STATE_COLOURS[state])
            if i == self.session.index:
                self.files.selection_set("end")
                self.files.see("end")

    def _on_files_motion(self, event: tk.Event) -> None:
        """Hovering a row shows its whole name beside the list (the list may cut it in the middle)."""
        row = self.files.nearest(event.y)
        box = self.files.bbox(row) if 0 <= row < len(self._file_names) else None
        if box is None or event.y > box[1] + box[3]:
            self.file_tip.place_forget()
            return
        name = self._file_names[row]
        self.file_tip.config(text=name)
        # Left of the list, over the canvas: never under the pointer (that would leave the list).
        self.file_tip.place(x=self.files.winfo_x() - 2, y=self.files.winfo_y() + box[1], anchor="ne")
        self.file_tip.lift()

    def _on_file_pick(self, event: tk.Event) -> None:
        picked = self.files.curselection()
        if picked and self._file_indices[picked[0]] != self.session.index:
            self.session.go(self._file_indices[picked[0]], 1)
            self._after_navigation()
        self.canvas.focus_set()

    def accept_and_next(self) -> None:
        self.session.accept_and_next()
        self._after_navigation()

    def next_unlabelled(self) -> None:
        self.session.next_unlabelled()
        self._after_navigation()

    def goto(self, number: int) -> None:
        """Open image ``number`` (1-based, as shown in the status bar)."""
        self.session.go(min(max(number, 1), len(self.session.images)) - 1, 1)
        self._after_navigation()

    def ask_goto(self) -> None:
        n = len(self.session.images)
        number = simpledialog.askinteger("Go to image", f"Image number (1-{n}):", parent=self.root, minvalue=1, maxvalue=n)
        if number is not None:
            self.goto(number)

    def save(self) -> None:
        if self.session.save() and not self.session.state.labelled and self.session.index not in self.session.unsaved:
            self.session.message = "nothing to save: image is unlabelled (click targets, or n for no target)"
        elif self.session.index not in self.session.unsaved:
            self.session.message = f"saved {self.session.label_path().name}"
        self.redraw()

    def accept(self) -> None:
        self.session.accept_proposals()
        self.redraw()

    def undo(self) -> None:
        if not self.session.undo():
            self.session.message = "nothing to undo"
        self.redraw()

    def redo(self) -> None:
        if not self.session.redo():
            self.session.message = "nothing to redo"
        self.redraw()

    def escape(self) -> None:
        self.help_shown = False
        self.session.selected = None
        self.redraw()

    def arrow(self, direction: tuple[int, int], step: float) -> str:
        """Arrows nudge the selected point; with nothing selected, left/right change image."""
        if self.session.selected is not None:
            self.session.nudge(direction[0] * step, direction[1] * step)
            self.redraw()
        elif direction == (1, 0):
            self.next()
        elif direction == (-1, 0):
            self.previous()
        return "break"

    def toggle_snap(self) -> None:
        self.session.snap = not self.session.snap
        self.session.message = f"snapping {'on' if self.session.snap else 'off'}"
        self.redraw()

    def snap_radius(self, step: int) -> None:
        self.session.snap_radius = min(max(self.session.snap_radius + step, 1), 15)
        self.session.message = f"snap radius {self.session.snap_radius} px"
        self.redraw()

    def _display(self, change: object, *args: int) -> None:
        change(*args)  # type: ignore[operator]
        self._update_levels()
        self.session.message = self.window.describe(self.region())
        self.redraw()

    def reset_display(self) -> None:
        self.window = Windowing()
        self.display_gray = None
        self._display(lambda: None)

    def toggle_help(self) -> None:
        self.help_shown = not self.help_shown
        self.redraw()

    def fit(self) -> None:
        if self.session.editable:
            self.view.fit(self.view.canvas, self.session.size)
        was, self.fitted = self.fitted, True
        if not was or self.window.region == "visible":
            self._update_levels()
        self.redraw()

    def zoom(self, x: float, y: float, factor: float) -> None:
        if self.session.editable:
            self.view.zoom_at(x, y, factor)
            self.fitted = False
            self._view_changed()

    def _view_changed(self) -> None:
        """A window on the visible area follows every zoom and pan."""
        if self.region() == "visible":
            self._update_levels()
        self.redraw()

    def wheel(self, x: float, y: float, direction: int) -> None:
        """The wheel zooms at the cursor; with the help shown and taller than the canvas, it scrolls it."""
        if self.help_shown and self.help_too_tall:
            self.scroll_help(-3 * direction)
        else:
            self.zoom(x, y, ZOOM_STEP if direction > 0 else 1 / ZOOM_STEP)

    def zoom_centre(self, factor: float) -> None:
        self.zoom(self.view.canvas[0] / 2, self.view.canvas[1] / 2, factor)

    def quit(self) -> None:
        """Close, after saving; if an edit cannot be written the user decides (default: stay)."""
        if not self.session.quit():
            self.redraw()
            if not messagebox.askyesno("Edits not saved", f"{self.session.message}\n\nQuit anyway and lose these edits?",
                                       icon="warning", default="no", parent=self.root):
                return
        self.root.destroy()

    # ---- drawing -------------------------------------------------------------------------------
    def redraw(self) -> None:
        """Draw at the next idle moment (many events in a row cost one redraw)."""
        if not self._redraw_pending:
            self._redraw_pending = True
            self.root.after_idle(self._redraw_now)

    def _redraw_now(self) -> None:
        self._redraw_pending = False
        c, s = self.canvas, self.session
        c.delete("all")
        if s.editable:
            # Editing points does not change the pixels: re-use the last rendering when the view,
            # the image and the display settings are unchanged (dragging stays smooth on big frames).
            v, w = self.view, self.window
            key = (self._image_serial, v.scale, v.x0, v.y0, v.canvas, w.gamma, w.colormap, w.background, self.levels)
            if key != self._rendered_key:
                rgb, x, y = self.view.render(self._shown_gray(), self.window, *self.levels)
                self.photo = tk.PhotoImage(data=to_ppm(rgb), format="PPM") if rgb.size else None
                self._rendered_key, self._rendered_at = key, (x, y)
            if self.photo is not None:
                c.create_image(*self._rendered_at, image=self.photo, anchor="nw", tags="image")
            self._draw_points()
        else:
            self.photo, self._rendered_key = None, None
            cw, ch = self.view.canvas
            text = s.error or ("no images in " + str(s.images_dir) if not s.images else "")
            c.create_text(cw / 2, ch / 2, text=text, fill="#ff6060", width=max(cw - 40, 100), font=("TkDefaultFont", 12))
        self._draw_crosshair()
        if self.help_shown:
            self._draw_help()
        self._update_status()
        self._fill_files()

    def _draw_points(self) -> None:
        c, s = self.canvas, self.session
        # A ring wider than a small target, with ticks outside it pointing at the exact centre: the
        # marked pixels stay visible at every zoom (nothing is drawn on the point itself).
        radius = max(8.0, 2.5 * self.view.scale)
        marks = [(u, v, proposal_colour(score, s.score_threshold), (3, 3), "proposal", f"{score:.2f}")
                 for u, v, score in s.shown_proposals]
        marks += [(u, v, SELECTED_COLOUR if i == s.selected else UNCERTAIN_COLOUR if i in s.state.uncertain else POINT_COLOUR,
                   None, "point", "?" if i in s.state.uncertain else "") for i, (u, v) in enumerate(s.state.points)]
        for u, v, colour, dash, tag, text in marks:
            x, y = self.view.to_canvas(u, v)
            for width, fill in ((4, OUTLINE_COLOUR), (2, colour)):
                c.create_oval(x - radius, y - radius, x + radius, y + radius, outline=fill, width=width, dash=dash, tags=tag)
                for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    c.create_line(x + dx * radius, y + dy * radius, x + dx * (radius + 6), y + dy * (radius + 6),
                                  fill=fill, width=width, tags=tag)
            if text:
                for offset, fill in ((1, OUTLINE_COLOUR), (0, colour)):
                    c.create_text(x + radius + 8 + offset, y - radius + offset, text=text, fill=fill, anchor="w",
                                  font=FIXED_FONT, tags=(tag, f"{tag}_label"))
        if s.last_click is not None:
            # Where the last click was and the line to where snapping put it, drawn only outside
            # the ring (a click inside it needs no mark, and the target stays uncovered).
            (cu, cv), (pu, pv) = s.last_click
            (x0, y0), (x1, y1) = self.view.to_canvas(cu, cv), self.view.to_canvas(pu, pv)
            gap = np.hypot(x1 - x0, y1 - y0)
            if gap > radius + 4:
                ex, ey = x1 + (x0 - x1) * radius / gap, y1 + (y0 - y1) * radius / gap
                for width, fill in ((3, OUTLINE_COLOUR), (1, CLICK_COLOUR)):
                    c.create_line(x0 - 3, y0 - 3, x0 + 4, y0 + 4, fill=fill, width=width, tags="click")
                    c.create_line(x0 - 3, y0 + 3, x0 + 4, y0 - 4, fill=fill, width=width, tags="click")
                    c.create_line(x0, y0, ex, ey, fill=fill, width=width, tags="click")

    def _draw_crosshair(self) -> None:
        c = self.canvas
        c.delete("crosshair")
        if self.cursor is None:
            return
        x, y = self.cursor
        cw, ch = self.view.canvas
        gap = 10  # keep the pixels around the cursor clear
        for coords in ((0, y, x - gap, y), (x + gap, y, cw, y), (x, 0, x, y - gap), (x, y + gap, x, ch)):
            c.create_line(*coords, fill=OUTLINE_COLOUR, width=3, tags="crosshair")
            c.create_line(*coords, fill=CROSSHAIR_COLOUR, width=1, tags="crosshair")

    def _draw_help(self) -> None:
        """Key and text columns, the text placed after the widest key (aligned in any font): two
        column pairs side by side when they fit the canvas, else one, scrolled with the wheel;
        on an opaque background."""
        c = self.canvas
        cw, ch = self.view.canvas
        pairs = [POINT_KEYS, IMAGE_KEYS]
        items, x, margin = [], 20, 20
        for k, rows in enumerate(pairs):
            tag = "" if k == 0 else str(k + 1)
            keys = c.create_text(x, margin, text="\n".join(r[0] for r in rows), anchor="nw", fill="#ffffff",
                                 font=FIXED_FONT, tags=("help", f"help_keys{tag}"))
            text = c.create_text(c.bbox(keys)[2] + 24, margin, text="\n".join(r[1] for r in rows), anchor="nw",
                                 fill="#ffffff", font=FIXED_FONT, tags=("help", f"help_text{tag}"))
            items.append((keys, text))
            x = c.bbox(text)[2] + 40
        if x - 40 + margin > cw:  # too wide for two: one pair under the other
            keys2, text2 = items[1]
            top = c.bbox(items[0][0])[3] + 17
            c.coords(keys2, 20, top)
            c.coords(text2, c.coords(items[0][1])[0], top)
        x0, y0, x1, y1 = c.bbox("help")
        self.help_too_tall = y1 + 10 > ch
        if self.help_too_tall:  # still too tall: scroll (wheel) within the canvas
            self.help_scroll = min(max(self.help_scroll, 0), y1 + 10 - ch)
            c.move("help", 0, -self.help_scroll)
            y0, y1 = y0 - self.help_scroll, y1 - self.help_scroll
        else:
            self.help_scroll = 0
        box = c.create_rectangle(x0 - 10, max(y0 - 10, 0), x1 + 10, min(y1 + 10, ch), fill="#101010", outline="#888888",
                                 tags=("help", "help_box"))
        c.tag_lower(box, items[0][0])

    def scroll_help(self, lines: int) -> None:
        self.help_scroll += 17 * lines
        self.redraw()

    def status_text(self) -> str:
        """Two lines: the image and its state; then the view, the cursor and the settings."""
        s = self.session
        n = len(s.images)
        done, total, bad = s.progress()
        first = [f"{s.index + 1}/{n}  {s.name}" if n else "no images", f"[{s.status()}]",
                 f"{done}/{total} images labelled" + (f" ({bad} unreadable)" if bad else ""),
                 f"snap {'r=' + str(s.snap_radius) if s.snap else 'off'}", "? help"]
        if self.review_filter:
            first.insert(3, f"review: {self.review_filter}")
        second = []
        if s.editable:
            second.append(f"zoom {self.view.scale:.2f}x")
            if self.cursor is not None:
                u, v = self._image_xy(*self.cursor)
                value = s.pixel_value(u, v)
                second.append(f"x {u:.2f} y {v:.2f}" + (f" = {value}" if value else ""))
            if s.selected is not None and s.selected < len(s.state.points):
                u, v = s.state.points[s.selected]
                second.append(f"selected #{s.selected + 1} at ({u:.2f}, {v:.2f})")
            if len(s.proposals):
                second.append(f"{len(s.shown_proposals)}/{len(s.proposals)} proposal(s) >= {s.score_threshold:.2f}: Enter accepts")
            second.append(self.window.describe(self.region()))
        return "   ".join(first) + "\n" + "   ".join(second)

    def _update_status(self) -> None:
        s = self.session
        self.status.config(text=self.status_text())
        message = s.message
        if s.error and s.error not in message:
            message = f"{s.error}   {message}".strip()
        bad = any(w in message for w in ERROR_WORDS)
        self.message.config(text=message, fg="#ff6060" if bad else "#b0b0b0")

    def start(self) -> None:
        """Open the first unlabelled image."""
        self.session.start()
        self._after_navigation()


def run(session: Session, window: Windowing | None = None) -> int:
    """Open the window and run until it is closed."""
    try:
        root = tk.Tk()
    except tk.TclError as e:
        print(f"error: cannot open a window ({e}); is a display available?", file=sys.stderr)
        return 1
    app = AnnotationApp(root, session, window)
    app.start()
    root.mainloop()
    return 0

