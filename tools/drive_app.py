"""Drive the real app under Xvfb and a window manager with xdotool, and save screenshots.

    .venv/bin/python tools/drive_app.py OUT_DIR [--n 600] [--epochs 3] [--display :99]

An annotator's short session, played with real X input events on a virtual screen
(``Xvfb :99 -screen 0 1600x1000x24``) under openbox: ``uldl-studio demo`` opens, training
starts from the Training panel's button, the review queue is walked with → and Enter (accept
and next), a digit relabels, Space marks unsure, Ctrl+Z / Ctrl+Shift+Z undo and redo, Ctrl+E
exports (the dialog is answered with Enter), File → Predict predicts a folder of 40 of the
demo's faces (they join the map as triangles) and a digit then relabels the dataset's sample
still shown, the window is made small and then maximised,
closed (Alt+F4, as the title bar's close button does) and opened again on the run it trained.
After each step the whole screen goes to ``OUT_DIR/NN-what.png`` (ImageMagick's ``import
-window root``); the app's log and a step log (``steps.txt``) go beside them.

Needs Xvfb, openbox, xdotool and ImageMagick's ``import`` on the PATH (it installs nothing; on
Debian/Ubuntu: ``sudo apt-get install xvfb openbox xdotool imagemagick`` plus the X11 libraries
that ``uldl-studio`` names when one is missing), and the project's virtual environment
(``make install``): run it with that environment's Python.  Settings, runs, caches and HOME
point to a temporary folder, so the user's own are not touched; every process it started
(Xvfb, openbox, the app) is ended when it exits, also on Ctrl+C or an error.

The Start button has no shortcut: the driver finds it on the screen by its text (rendered by
Qt in the app's font on the same display, matched by normalised cross-correlation) and clicks it.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
APP = REPO / ".venv" / "bin" / "uldl-studio"
TOOLS = {"Xvfb": "xvfb", "openbox": "openbox", "xdotool": "xdotool", "import": "imagemagick"}
SCREEN = (1600, 1000)


class DriveError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- processes
class Session:
    """The processes this driver started, ended (whole process groups) when it exits."""

    def __init__(self, out: Path, display: str) -> None:
        self.out, self.display = out, display
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = dict(os.environ, DISPLAY=display)
        self.env.pop("QT_QPA_PLATFORM", None)
        self.log = open(out / "steps.txt", "a", encoding="utf-8")
        self.shot_no = 0
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {text}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def start(self, name: str, argv: list[str], env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
        handle = open(log, "ab") if log else subprocess.DEVNULL
        proc = subprocess.Popen(argv, env=env or self.env, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 5.0) -> None:
        if proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def cleanup(self) -> None:
        for name, proc in reversed(self.procs):   # the app first, Xvfb last
            self.stop(proc)
        self.procs.clear()

    # -- X helpers ------------------------------------------------------------------------
    def x(self, *args: str, timeout: float = 20.0, check: bool = True) -> str:
        try:
            done = subprocess.run(["xdotool", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            if check:
                raise DriveError(f"xdotool {' '.join(args)}: no answer in {timeout:.0f} s") from None
            return ""
        if check and done.returncode != 0:
            raise DriveError(f"xdotool {' '.join(args)}: {done.stderr.strip() or done.returncode}")
        return done.stdout.strip()

    def key(self, *keys: str, pause: float = 0.8) -> None:
        self.x("key", "--clearmodifiers", *keys)
        time.sleep(pause)

    def shot(self, what: str) -> Path:
        self.shot_no += 1
        path = self.out / f"{self.shot_no:02d}-{what}.png"
        subprocess.run(["import", "-window", "root", str(path)], env=self.env, check=True, timeout=30,
                       capture_output=True)
        self.say(f"screenshot {path.name}")
        return path

    def grab(self) -> np.ndarray:
        """The screen as a float32 grey image."""
        from PIL import Image

        done = subprocess.run(["import", "-window", "root", "png:-"], env=self.env, capture_output=True,
                              check=True, timeout=30)
        import io

        return np.asarray(Image.open(io.BytesIO(done.stdout)).convert("L"), dtype=np.float32)

    def settle(self, quiet: float = 1.5, timeout: float = 20.0) -> bool:
        """Wait until the screen has not changed for ``quiet`` seconds (False: it kept changing).
        A blinking text cursor (a few dozen pixels) is not a change."""
        end = time.monotonic() + timeout
        last, since = self.grab(), time.monotonic()
        while time.monotonic() < end:
            time.sleep(0.5)
            now = self.grab()
            if int((now != last).sum()) > 64:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return True
        return False

    def windows(self, name: str) -> list[str]:
        out = self.x("search", "--onlyvisible", "--name", name, check=False, timeout=10)
        return [w for w in out.split() if w]

    def wait_window(self, name: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = self.windows(name)
            if found:
                return found[-1]
            time.sleep(0.5)
        raise DriveError(f"no window named like {name!r} after {timeout:.0f} s")

    def wait_title(self, window: str, text: str, timeout: float, app: subprocess.Popen) -> str:
        end = time.monotonic() + timeout
        title = ""
        while time.monotonic() < end:
            if app.poll() is not None:
                raise DriveError(f"the app exited with status {app.returncode} (see app.log)")
            title = self.x("getwindowname", window, check=False, timeout=10)
            if text in title:
                return title
            time.sleep(1.0)
        raise DriveError(f"the window title stayed {title!r}, expected {text!r}, after {timeout:.0f} s")

    def geometry(self, window: str) -> tuple[int, int, int, int]:
        values = dict(line.split("=", 1) for line in
                      self.x("getwindowgeometry", "--shell", window).splitlines() if "=" in line)
        return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


# ----------------------------------------------------------------------------- text on screen
def text_template(text: str, display_env: dict) -> np.ndarray:
    """``text`` as the app draws a push button's label (grey, float32), rendered by Qt on the
    same display in a child process, with a margin of button background around it."""
    code = r"""
import sys
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPainter, QPalette
from PySide6.QtWidgets import QApplication, QPushButton
app = QApplication(sys.argv[:1])
button = QPushButton(sys.argv[1])
font, pal = button.font(), button.palette()
rect = button.fontMetrics().boundingRect(sys.argv[1])
padx, pady = 7, 2
image = QImage(rect.width() + 2 * padx, button.fontMetrics().height() + 2 * pady, QImage.Format.Format_Grayscale8)
image.fill(pal.color(QPalette.ColorRole.Button))
p = QPainter(image)
p.setFont(font)
p.setPen(pal.color(QPalette.ColorRole.ButtonText))
p.drawText(image.rect(), int(Qt.AlignmentFlag.AlignCenter), sys.argv[1])
p.end()
image.save(sys.argv[2])
"""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "t.png"
        done = subprocess.run([sys.executable, "-c", code, text, str(target)], env=display_env,
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or not target.is_file():
            raise DriveError(f"could not render the text {text!r}: {done.stderr[-500:]}")
        from PIL import Image

        return np.asarray(Image.open(target).convert("L"), dtype=np.float32)


def match(screen: np.ndarray, template: np.ndarray) -> tuple[float, int, int]:
    """Best normalised cross-correlation of ``template`` in ``screen``: (score, x, y) of the
    template's top-left corner."""
    screen = screen.astype(np.float64)   # the squared sums overflow float32's precision
    H, W = screen.shape
    h, w = template.shape
    t = template.astype(np.float64) - float(template.mean())
    tnorm = float(np.sqrt((t * t).sum())) or 1.0
    shape = (H + h - 1, W + w - 1)
    corr = np.fft.irfft2(np.fft.rfft2(screen, shape) * np.fft.rfft2(t[::-1, ::-1], shape), shape)[h - 1:H, w - 1:W]
    ii = np.pad(screen, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    ii2 = np.pad(screen * screen, ((1, 0), (1, 0))).cumsum(0).cumsum(1)

    def box(a):
        return a[h:, w:] - a[:-h, w:] - a[h:, :-w] + a[:-h, :-w]

    n = h * w
    var = np.maximum(box(ii2) - box(ii) ** 2 / n, 0.0)
    ncc = corr / (np.sqrt(var) * tnorm + 1e-3)
    ncc[var < 1.0] = 0.0  # flat areas
    y, x = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    return float(ncc[y, x]), int(x), int(y)


def click_text(s: Session, text: str, *, within=None, timeout: float = 30.0, threshold: float = 0.65) -> tuple[int, int]:
    """Click the centre of ``text`` where it shows on screen (``within``: x, y, w, h)."""
    template = text_template(text, s.env)
    end = time.monotonic() + timeout
    best = (0.0, 0, 0)
    while time.monotonic() < end:
        screen = s.grab()
        ox = oy = 0
        if within is not None:
            x, y, w, h = within
            ox, oy = max(0, x), max(0, y)
            screen = screen[oy:y + h, ox:x + w]
        best = match(screen, template)
        if best[0] >= threshold:
            cx, cy = ox + best[1] + template.shape[1] // 2, oy + best[2] + template.shape[0] // 2
            s.say(f"found {text!r} at ({cx}, {cy}), score {best[0]:.2f}")
            s.x("mousemove", str(cx), str(cy))
            time.sleep(0.3)
            s.x("click", "1")
            return cx, cy
        time.sleep(1.0)
    raise DriveError(f"{text!r} not found on the screen (best score {best[0]:.2f})")


# ----------------------------------------------------------------------------- the session
def finished_run(runs: Path, epochs: int) -> Path | None:
    """A run under ``runs`` whose history has ``epochs`` rows (the last epoch's outputs are
    written with it)."""
    for history in runs.rglob("history.csv"):
        try:
            rows = len(history.read_text(encoding="utf-8").strip().splitlines()) - 1
        except OSError:
            continue
        if rows >= epochs and (history.parent / "samples.csv").is_file():
            return history.parent
    return None


def relabel_kept_label(run: Path) -> str | None:
    """The sample id when the journal's last edit relabelled a sample to the label it was
    given (the key confirmed it), else None."""
    import json

    import pandas as pd

    journals = sorted(run.parent.rglob("edits.jsonl"), key=lambda p: p.stat().st_mtime)
    if not journals:
        return None
    lines = journals[-1].read_text(encoding="utf-8").strip().splitlines()
    last = json.loads(lines[-1]) if lines else {}
    if last.get("op") != "relabel" or len(last.get("ids", [])) != 1:
        return None
    samples = pd.read_csv(run / "samples.csv", usecols=["sample_id", "label"]).set_index("sample_id")
    sample = last["ids"][0]
    return sample if int(samples.loc[sample, "label"]) == int(last["labels"][0]) else None


def run_dir_of(path: Path, runs: Path) -> Path:
    """The folder to open with ``uldl-studio gui``: the top folder under ``runs`` holding ``path``."""
    return runs / path.relative_to(runs).parts[0]


def drive(args, s: Session, env_dir: Path) -> None:
    runs = env_dir / "runs"
    app_env = dict(s.env, HOME=str(env_dir / "home"), ULDL_STUDIO_DEMO_N=str(args.n),
                   ULDL_STUDIO_SETTINGS_DIR=str(env_dir / "settings"), ULDL_STUDIO_RUNS=str(runs),
                   ULDL_STUDIO_CACHE=str(env_dir / "cache"), ULDL_STUDIO_THUMBS=str(env_dir / "thumbs"),
                   XDG_CONFIG_HOME=str(env_dir / "home" / ".config"), XDG_DATA_HOME=str(env_dir / "home" / ".local" / "share"),
                   XDG_CACHE_HOME=str(env_dir / "home" / ".cache"))
    for sub in ("home", "settings", "runs", "cache", "thumbs"):
        (env_dir / sub).mkdir(parents=True, exist_ok=True)
    # The Training panel opens with the epochs of the last session (its settings): a short run.
    # The Predict dialog opens on the last images predicted: a folder filled after the demo loads.
    collection = env_dir / "collection"
    collection.mkdir(parents=True, exist_ok=True)
    seed = ("from uldl_studio.qt.settings import StudioSettings\n"
            f"s = StudioSettings(); s.set_training_values({{'epochs': {int(args.epochs)}}})\n"
            f"s.set_predict_values({{'data': {str(collection)!r}, 'out_dir': {str(env_dir)!r}}}); s.sync()\n")
    subprocess.run([sys.executable, "-c", seed], env=dict(app_env, QT_QPA_PLATFORM="offscreen"),
                   check=True, timeout=120, capture_output=True)
    app_log = s.out / "app.log"

    # -- the X server and the window manager
    lock = Path(f"/tmp/.X{args.display.lstrip(':')}-lock")
    if lock.exists():
        raise DriveError(f"display {args.display} is in use ({lock} exists); pass another --display")
    xvfb = s.start("Xvfb", ["Xvfb", args.display, "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
                   log=s.out / "xvfb.log")
    end = time.monotonic() + 20
    while s.x("getdisplaygeometry", check=False, timeout=5) != f"{SCREEN[0]} {SCREEN[1]}":
        if xvfb.poll() is not None or time.monotonic() > end:
            raise DriveError("Xvfb did not start (see xvfb.log)")
        time.sleep(0.3)
    wm = s.start("openbox", ["openbox"], log=s.out / "openbox.log")
    time.sleep(1.5)
    if wm.poll() is not None:
        raise DriveError("openbox did not start (see openbox.log)")
    s.say(f"Xvfb {args.display} and openbox are up")

    # -- 1. the demo
    app = s.start("app", [str(APP), "demo"], env=app_env, log=app_log)
    window = s.wait_window("^ULDL Studio", 120)
    s.wait_title(window, "demo", args.timeout, app)
    s.settle(timeout=30)
    s.shot("demo-loaded")

    # -- 2. train
    x, y, w, h = s.geometry(window)
    click_text(s, "Start training", within=(x, y, w, h - 40))  # not the status bar's hint
    time.sleep(3)
    s.shot("training-started")
    end = time.monotonic() + args.timeout
    run = None
    while run is None:
        if app.poll() is not None:
            raise DriveError(f"the app exited with status {app.returncode} during training (see app.log)")
        if time.monotonic() > end:
            s.shot("training-timeout")
            raise DriveError(f"training did not finish in {args.timeout:.0f} s")
        time.sleep(2)
        run = finished_run(runs, args.epochs)
    s.say(f"trained: {run}")
    if not s.settle(quiet=4, timeout=180):  # the map's UMAP and the tiles come after the last epoch
        s.say("the screen was still changing after 180 s")
    s.shot("trained")

    # -- 3. the review queue, from the keyboard
    s.x("windowactivate", "--sync", window, check=False)
    for i in range(3):
        s.key("Right")
        s.shot(f"right-{i + 1}")
    s.key("Return")
    s.shot("enter-accept-next")
    # A digit that is the sample's own label only confirms it: then press another one.
    digit = "3"
    s.key(digit)
    same = relabel_kept_label(run)
    if same is not None:
        s.say(f"{digit} was {same}'s own label; pressing another digit")
        s.shot(f"digit-{digit}-same-label")
        digit = "1" if digit != "1" else "2"
        s.key(digit)
    s.shot(f"digit-{digit}-relabel")
    s.key("space")
    s.shot("space-unsure")
    s.key("ctrl+z")
    s.shot("ctrl-z-undo")
    s.key("ctrl+shift+z")
    s.shot("ctrl-shift-z-redo")

    # -- 4. export
    s.key("ctrl+e", pause=1.5)
    dialogs = s.windows("^Export soft labels")
    s.shot("ctrl-e-export-dialog")
    if not dialogs:
        raise DriveError("Ctrl+E opened no 'Export soft labels' dialog")
    before = set(runs.rglob("*.csv"))
    s.x("windowactivate", "--sync", dialogs[-1], check=False)
    s.key("Return", pause=2.0)
    s.shot("export-saved")
    written = sorted(set(runs.rglob("*.csv")) - before)
    s.say(f"export wrote: {[str(p) for p in written] or 'nothing'}")
    if s.windows("^Export soft labels"):
        s.say("the export dialog is still open; closing it with Escape")
        s.key("Escape")

    # -- 4b. predict another collection (File → Predict): its samples join the map as triangles
    for i, image in enumerate(sorted((env_dir / "cache").rglob("*.png"))[:40]):
        shutil.copy(image, collection / f"face{i:02d}.png")
    s.x("windowactivate", "--sync", window, check=False)
    s.key("alt+f", pause=0.8)
    s.key("p", pause=1.5)
    dialogs = s.windows("^Predict soft labels")
    s.shot("predict-dialog")
    if not dialogs:
        raise DriveError("File → Predict opened no dialog")
    s.x("windowactivate", "--sync", dialogs[-1], check=False)
    s.key("Return", pause=1.0)
    end = time.monotonic() + 120
    while time.monotonic() < end and not list(env_dir.glob("*.csv")):
        time.sleep(1)
    s.say(f"predicted: {[p.name for p in env_dir.glob('*.csv')] or 'nothing'}")
    s.settle(timeout=30)
    s.shot("predicted")
    if s.windows("^Predict soft labels"):
        s.key("Escape")
    s.x("windowactivate", "--sync", window, check=False)
    s.settle(timeout=15)
    s.shot("predicted-on-map")
    s.key("1")  # the current sample is the dataset's: the key acts on it, never on a predicted row
    s.shot("digit-after-predict")

    # -- 5. small, then large (maximised: a double click on the title bar, openbox's default)
    s.x("windowactivate", "--sync", window, check=False)
    s.x("windowsize", "--sync", window, "800", "560", check=False, timeout=10)
    s.settle(timeout=15)
    s.say(f"asked for 800x560, got {s.geometry(window)[2:]}")
    s.shot("window-small")
    x, y, w, h = s.geometry(window)
    for above in (30, 20, 40, 12):              # the title bar's height is the theme's
        s.x("mousemove", str(x + w // 3), str(max(2, y - above)))
        time.sleep(0.3)
        s.x("click", "--repeat", "2", "--delay", "80", "1")
        time.sleep(1.5)
        if s.geometry(window)[2] > w + 200:
            break
    s.settle(timeout=15)
    s.say(f"maximised: {s.geometry(window)}")
    s.shot("window-maximised")

    # -- 6. close (the window manager's close), then open the run again
    s.key("alt+F4", pause=1.0)
    try:
        app.wait(60)
    except subprocess.TimeoutExpired:
        s.shot("close-did-not-end")
        raise DriveError("the app did not exit within 60 s of Alt+F4") from None
    s.say(f"the app exited with status {app.returncode}")
    s.shot("closed")
    again = s.start("app", [str(APP), "gui", str(run_dir_of(run, runs))], env=app_env, log=app_log)
    window = s.wait_window("^ULDL Studio", 120)
    s.wait_title(window, "run", args.timeout, again)
    s.settle(quiet=3, timeout=60)
    s.shot("reopened-run")
    s.key("alt+F4", pause=1.0)
    try:
        again.wait(60)
        s.say(f"the reopened app exited with status {again.returncode}")
    except subprocess.TimeoutExpired:
        s.say("the reopened app did not exit within 60 s of Alt+F4")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the screenshots and logs (created)")
    parser.add_argument("--display", default=":99")
    parser.add_argument("--n", type=int, default=600, help="demo samples (default 600)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed for loading and for training")
    parser.add_argument("--keep-env", action="store_true", help="keep the temporary settings/runs folder")
    args = parser.parse_args(argv)

    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        packages = " ".join(dict.fromkeys(TOOLS[t] for t in missing))
        print(f"missing: {', '.join(missing)}. Install with: sudo apt-get install {packages}", file=sys.stderr)
        return 2
    if not APP.exists():
        print(f"{APP} not found: create the virtual environment first (make install)", file=sys.stderr)
        return 2
    try:
        import PIL  # noqa: F401
        import PySide6  # noqa: F401
    except ImportError as exc:
        print(f"{exc}: run this with the project's environment (.venv/bin/python)", file=sys.stderr)
        return 2

    args.out.mkdir(parents=True, exist_ok=True)
    env_dir = Path(tempfile.mkdtemp(prefix="uldl-drive-"))
    s = Session(args.out, args.display)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    atexit.register(s.cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    status = 0
    try:
        drive(args, s, env_dir)
        s.say(f"done: {s.shot_no} screenshots in {args.out}")
    except DriveError as exc:
        s.say(f"FAILED: {exc}")
        status = 1
    except KeyboardInterrupt as exc:
        s.say(f"interrupted ({exc})")
        status = 130
    finally:
        s.cleanup()
        if args.keep_env:
            s.say(f"settings, runs and caches kept in {env_dir}")
        else:
            shutil.rmtree(env_dir, ignore_errors=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
