"""The ``aulib`` command line (typer). Front ends only talk to ``Analyzer`` and the stage classes.

Errors: every command ends a failure with ONE line on stderr, ``error: <what, naming the file>``,
and exit code 2 — bad options (click's usage errors included), unreadable or foreign files, model
files that fail their checksum. :class:`_ErrorHandlingGroup` does it once for all commands, so it
holds for the console script, ``python -m aulib.cli`` and ``typer.testing.CliRunner`` alike.
An unexpected exception (a bug) prints one line with its type and exits 1; ``AULIB_DEBUG=1``
shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import re
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.file_proxy import FileProxy
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup


def _real_stderr() -> object:
    """The process's stderr at the time of writing, past rich's proxy: while a progress bar shows, rich replaces
    ``sys.stderr`` by a proxy that prints through the console below, whose file this is — writing there looped
    forever (every run of several inputs in a terminal hung at its first line)."""
    s = sys.stderr
    while isinstance(s, FileProxy):
        s = s.rich_proxied_file
    return s


class _Stderr(io.TextIOBase):
    """Where messages go: the process's stderr at the time of writing (:func:`_real_stderr`), but a closed
    (``2>&-``) or full (``2>/dev/full``) stderr loses the message instead of failing a run that did its work
    (it exited 1, "a bug", after writing the table)."""

    def write(self, s: str) -> int:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            _real_stderr().write(s)  # type: ignore[attr-defined]
        return len(s)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            _real_stderr().flush()  # type: ignore[attr-defined]

    def isatty(self) -> bool:
        try:
            return _real_stderr().isatty()  # type: ignore[attr-defined]
        except (OSError, ValueError, AttributeError):
            return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(_real_stderr(), "encoding", None) or "utf-8"


# COLUMNS=0 (or LINES=0) in the environment made rich lay every message out in no columns: each error line was lost
# (exit 2 and nothing said). A size below 1 means none was given: the terminal's own, or rich's default, counts.
for _size in ("COLUMNS", "LINES"):
    if os.environ.get(_size, "").strip().isdigit() and int(os.environ[_size]) < 1:
        del os.environ[_size]

# soft_wrap: a message is never broken over several lines, whatever the terminal width. emoji=False: a file
# named "day:smile:1.jpg" was printed with an emoji in its name (and rich's emoji table cost 3 ms of each run).
err = Console(file=_Stderr(), soft_wrap=True, emoji=False)


def _out(text: str) -> None:
    """Print a command's result on stdout. Closed (``>&-``) or failing (``>/dev/full``), it is an error
    naming standard output (the report was lost silently with exit 0, or "[Errno 28]" named nothing);
    a reader that left (``| head``) ends the command quietly."""
    if sys.stdout is None:
        raise OSError(errno.EBADF, "closed, so the result cannot be shown (give -o FILE to write a table)",
                      "standard output")
    try:
        typer.echo(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), "standard output") from None


def error_line(e: BaseException) -> str:
    """One line describing an exception for a user: the message for aulib's and the OS's errors
    (they name the file), the type plus a hint for anything unexpected."""
    ModelFileError = _model_file_error()
    blocking = _file_in_the_way(e)
    if blocking is not None:
        # os.makedirs met a file where a folder of the output's path goes ("-o photo.jpg/out.csv"): "File exists"
        msg = f"{blocking}: is a file, so no folder can be made there for the output (give another path)"
    elif isinstance(e, OSError) and e.filename is not None and e.strerror:
        msg = f"{e.filename}: {e.strerror}"
    elif isinstance(e, (ValueError, OSError, ModelFileError, MemoryError, KeyError, ImportError)):
        msg = str(e) or type(e).__name__
        if isinstance(e, MemoryError):
            msg = f"out of memory ({msg})"
        elif isinstance(e, ImportError):
            msg = f"{msg} ({_import_hint(e)})"
    else:
        msg = (f"unexpected {type(e).__name__}: {e} — this is a bug in aulib; rerun with AULIB_DEBUG=1 for "
               "the traceback and report it")
    from aulib.table import printable

    # one line, whatever the message contained, and no terminal control sequence from a name it quotes
    return printable(" ".join(msg.split()))


# What a run needs whatever the command: a failure to import one of these is a broken installation, not a missing
# extra (it said "is the package installed with the extra this command needs?" for a broken cv2)
_CORE_MODULES = ("aulib", "numpy", "cv2", "dlib", "onnxruntime", "skimage", "sklearn", "pandas", "pyarrow", "PIL",
                 "av", "typer", "rich", "matplotlib", "fsspec", "threadpoolctl")


def _import_hint(e: ImportError) -> str:
    """What to do about a module that could not be imported: reinstall aulib (or that dependency), or install
    the extra the command needs."""
    top = (getattr(e, "name", None) or "").split(".")[0]
    if top == "aulib":
        return "aulib's installation is incomplete or damaged: reinstall it (pip install --force-reinstall aulib)"
    if top in _CORE_MODULES:
        return f"{top} is a dependency of aulib and is missing or broken: reinstall it, or aulib"
    return "is the package installed with the extra this command needs?"


def _model_file_error() -> type[Exception]:
    """aulib.models' ModelFileError, or a stand-in when that package itself is what is missing (the error handler
    then failed on its own import: two tracebacks)."""
    try:
        from aulib.models import ModelFileError
    except ImportError:
        return RuntimeError
    return ModelFileError


def _file_in_the_way(e: BaseException) -> str | None:
    """The file that stands where a folder of the path an OSError names should be (File exists / Not a
    directory from making or opening a path under it), or None."""
    if not isinstance(e, (FileExistsError, NotADirectoryError)) or not e.filename:
        return None
    path = Path(os.fsdecode(e.filename))
    for p in (path, *path.parents):
        if p.is_file() and (p != path or isinstance(e, FileExistsError)):
            return str(p)
    return None


def _is_click_error(e: BaseException) -> bool:
    """A click ``ClickException`` (usage errors, bad option values): matched by name because typer ≥ 0.22
    vendors its own copy of click, whose classes differ from those of the installed ``click``."""
    return any(c.__name__ == "ClickException" for c in type(e).__mro__)


def _refuse_empty_values(group: TyperGroup, ctx: typer.Context, args: list[str]) -> None:
    """Refuse an option given an empty string (``-o ""``, ``--per-input=$UNSET``) before click reads it.

    click turns ``""`` into ``Path(".")``: ``--per-input ""`` wrote tables into the working folder,
    ``--overlay ""`` was dropped, ``-o ""`` was refused as "'.': unknown output format". An empty value
    is nearly always an unset shell variable; no option of aulib means "here" by it."""
    cmd: object = group
    rest = list(args)
    where = ctx
    while hasattr(cmd, "get_command") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        cmd = cmd.get_command(ctx, name)  # type: ignore[attr-defined]
        if cmd is None:
            return  # an unknown command: click's own error
        where = typer.Context(cmd, parent=where, info_name=name)  # type: ignore[arg-type]
    takes_value = {name for p in getattr(cmd, "params", []) if getattr(p, "param_type_name", "") == "option"
                   and not getattr(p, "is_flag", False) and not getattr(p, "count", False) for name in p.opts}
    for i, tok in enumerate(rest):
        name, eq, value = tok.partition("=")
        if name in takes_value and ((eq and not value) or (not eq and i + 1 < len(rest) and rest[i + 1] == "")):
            raise typer.BadParameter("an empty value ('') is not allowed (an unset variable?)", ctx=where,
                                     param_hint=f"'{name}'")


def _running_as_program() -> bool:
    """The process is the ``aulib`` command (console script or ``python -m aulib.cli``), not a host that
    called the CLI in-process (a test runner, a notebook), which must not be ended by it. Told by the module run
    as the program: any ``python -m X`` runs a ``__main__.py`` (``python -m pytest`` was taken for aulib, and a
    Ctrl-C in a test of the command ended the test run)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None:  # python -m aulib / python -m aulib.cli
        ours = spec.name in ("aulib.__main__", "aulib.cli")
    else:  # the console script, a file run as the program
        ours = Path(sys.argv[0]).name in ("aulib", "aulib.exe")
    return ours and threading.main_thread().is_alive()


def _reader_gone() -> None:
    """stdout's reader closed the pipe (``| head``): exit quietly with 0, as the other commands do, with
    stdout pointed at /dev/null so Python's final flush does not print "Exception ignored … BrokenPipeError"."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(0)


def help_not_shown(e: BaseException) -> str | None:
    """The one line for an error raised while the help text was being written (``aulib --help > /dev/full``, a
    closed stdout), else None: it escaped as a traceback, or said "[Errno 28] No space left on device" naming
    nothing."""
    import traceback

    if not isinstance(e, OSError) or e.filename is not None or not any(
            f.name in ("show_help", "get_help", "format_help", "rich_format_help")
            for f in traceback.extract_tb(e.__traceback__)):
        return None
    return f"standard output: {e.strerror or e}, so the help cannot be shown"


class _ErrorHandlingGroup(TyperGroup):
    """The top-level command group: turns every error of every sub-command into one stderr line."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        """Top-level options (``aulib --bogus``) are parsed before :meth:`invoke`: same one-line errors."""
        try:
            _refuse_empty_values(self, ctx, args)
            return super().parse_args(ctx, args)
        except BrokenPipeError:  # `aulib analyze --help | head -1`
            _reader_gone()
        except Exception as e:
            self._usage_error(e, ctx)
            raise

    @staticmethod
    def _usage_error(e: Exception, ctx: typer.Context) -> None:
        """Re-raise what click handles itself; print a click usage error as one line and exit 2, and help that could
        not be written (:func:`help_not_shown`) as one line and exit 1."""
        said = help_not_shown(e)
        if said is not None:
            err.print(f"[red]error:[/red] {escape(said)}")
            raise typer.Exit(1) from None
        if isinstance(e, (typer.Exit, typer.Abort)) or type(e).__name__ in ("Exit", "Abort", "NoArgsIsHelpError"):
            raise e  # --help, explicit exit codes, Ctrl-C: click's own handling
        if _is_click_error(e):  # bad option value, unknown option or command
            sub = getattr(e, "ctx", None)
            where = sub.command_path if sub is not None else ctx.command_path
            from aulib.table import printable

            err.print(f"[red]error:[/red] {escape(printable(' '.join(e.format_message().split())))} "  # type: ignore[attr-defined]
                      f"(see: {escape(where)} --help)")
            raise typer.Exit(2) from None

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `aulib bench clip.mp4 | head -1`: the reader has what it wanted
            _reader_gone()
        except KeyboardInterrupt as e:  # one line and the shell's 130, not click's bare "Aborted!"
            from aulib.console import Terminated

            # only where there is an output to resume from: without -o or --per-input, --resume is refused
            hint = "; the same command with --resume finishes what is left" if ctx.meta.get(_RESUMABLE) else ""
            code = 128 + e.signum if isinstance(e, Terminated) else 130  # SIGTERM 143, SIGHUP 129: the shell's
            err.print(f"{'terminated' if code != 130 else 'interrupted'}{hint}")
            if _running_as_program():
                # Every output is closed and consistent here (the sinks' context managers have run). A normal
                # exit then destroys onnxruntime's and FFmpeg's native state while a helper thread may still
                # be inside it, which aborted the process about once in 8 Ctrl-Cs ("terminate called without
                # an active exception", SIGABRT instead of 130): the program leaves without that teardown.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            raise typer.Exit(code) from None
        except Exception as e:
            self._usage_error(e, ctx)
            if _debug():
                raise
            known = isinstance(e, (ValueError, OSError, _model_file_error(), MemoryError, KeyError, ImportError))
            err.print(f"[red]error:[/red] {escape(error_line(e))}")
            raise typer.Exit(2 if known else 1) from None


def _debug() -> bool:
    """``AULIB_DEBUG`` as every aulib switch reads (``true``/``on``… too: only ``1`` counted); a malformed value
    is said, and the error stays one line."""
    from aulib.env import flag

    try:
        return flag("AULIB_DEBUG", False)
    except ValueError as e:
        err.print(f"[yellow]warning:[/yellow] {escape(str(e))}")
        return False


app = typer.Typer(add_completion=False, no_args_is_help=True, cls=_ErrorHandlingGroup,
                  pretty_exceptions_enable=False, help="Offline facial Action Unit and emotion recognition.")
train_app = typer.Typer(no_args_is_help=True, help="Train aulib's models from ../shared/data.")
app.add_typer(train_app, name="train")

# Training writes into the source checkout's folders; an installed wheel has none (aulib.training.REPO)
CACHE_HELP = "Default: cache/ of the checkout, else of the working folder."
REPORTS_HELP = "Default: reports/ of the checkout, else of the working folder."
DATA = typer.Option(Path("../shared/data"), "--data", help="Folder holding ckplus48/ and ferplus/.")


# Seconds between progress lines where no bar can be drawn (see _LoggedProgress).
_LOG_EVERY = 10.0


class _LoggedProgress(Progress):
    """rich's bar, and where it cannot be drawn — stderr a file or a pipe (``nohup aulib analyze … 2> log``), a
    ``TERM=dumb`` terminal — a plain line every :data:`_LOG_EVERY` seconds (``analyze 3/40 0:01:10``): rich draws
    nothing there until the run ends, so an hours-long batch said nothing in its log."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._plain = not self.disable and (not self.console.is_terminal or self.console.is_dumb_terminal)
        self._logged = time.monotonic()

    def update(self, task_id: TaskID, **kwargs: object) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)  # type: ignore[arg-type]
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def _log(self, task_id: TaskID) -> None:
        now = time.monotonic()
        if not self._plain or now - self._logged < _LOG_EVERY:
            return
        self._logged = now
        with self._lock:
            task = self._tasks[task_id]
            done, total, elapsed = int(task.completed), task.total, int(task.elapsed or 0)
            what = task.description
        hours, rest = divmod(elapsed, 3600)
        minutes, seconds = divmod(rest, 60)
        self.console.print(f"{what} {done}/{int(total) if total else '?'} {hours}:{minutes:02d}:{seconds:02d}",
                           markup=False, highlight=False)


def _progress(total: int) -> Progress:
    """A progress bar on stderr, shown only for more than one input (or one video's frames)."""
    return _LoggedProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           console=err, disable=total <= 1, transient=False)


def _drop(prog: Progress) -> None:
    """Take a run's progress bar off the screen before its one error line (a refused run left
    "analyze 0/4" printed after the error)."""
    prog.live.transient = True
    # rich's stop writes an empty line on a console that is not a terminal; on a terminal it must speak: it erases
    # the bar and shows the cursor again (quiet, the bar stayed, the error was glued to its line, and the shell came
    # back with the cursor hidden)
    err.quiet = not err.is_terminal
    try:
        prog.stop()
    finally:
        err.quiet = False
    prog.stop = lambda: None  # type: ignore[method-assign]  # and leaving the ``with`` would write it again


# ``ctx.meta`` key set by ``analyze`` once its options are checked: whether it writes an output --resume can finish
_RESUMABLE = "aulib.resumable"


def _nothing_read(n: int) -> None:
    """Exit 2 when no input could be read, with the one error line every failure has (the code came alone)."""
    _fail(f"no input could be read ({n} input{'s' if n > 1 else ''}; each row's error column says why)")


def _nothing_readable(df) -> bool:
    """True when every input failed to be read (not merely had no face): exit code 2 then."""
    unread = (df["success"] == 0) & df.apply(lambda r: r["error"].startswith(r["input"]), axis=1)
    return bool(len(df)) and bool(unread.all())


def _fail(msg: str, code: int = 2) -> None:
    """Print ``msg`` (rich markup: escape user text) as one error line and exit with ``code``."""
    err.print(f"[red]error:[/red] {msg}")
    raise typer.Exit(code)


def _finite(value: float | None) -> float | None:
    """Option callback: NaN and infinity pass ``min=``/``max=`` checks (every comparison with NaN is
    false), so a float option refuses them here, as a usage error naming the option."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, not {value}")
    return value


def _frame_rate(value: float | None) -> float | None:
    """``--fps``: finite (:func:`_finite`) and at most :data:`aulib.video.reader.MAX_FPS` (1.7e308 overflowed
    into a failure row per video). Not given, nothing is imported: aulib.video costs a photo's run 0.2 s."""
    if _finite(value) is None:
        return None
    from aulib.video.reader import MAX_FPS

    if value > MAX_FPS:  # type: ignore[operator]
        raise typer.BadParameter(f"must be at most {MAX_FPS:g}, not {value:g} (a rate above the video's own keeps "
                                 "every frame: leave --fps out for that)")
    return value


def _local_folder(option: str, where: Path | None) -> None:
    """Refuse a URL for an option that writes local files: typer made "s3://lab/x/" the local folder
    "s3:/lab/x", and the run wrote into ./s3:."""
    from aulib.storage import redact

    if where is not None and re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", str(where)):
        _fail(escape(f"{option} writes local files: give a folder, not a URL ({redact(str(where))}); for an object "
                     "store, aulib analyze -o PREFIX/ writes one Parquet part per input"))


def _overlay_fits(overlay: Path | None, unique: list) -> None:
    """Refuse, before any work, an overlay *file* for a run it does not fit (several inputs, or a video's .mp4 for
    a photo): the whole run was analysed (a 472-frame clip) and then warned that no overlay was written.
    ``unique``: the run's inputs, an input named twice once (``dedupe``)."""
    if overlay is None:
        return
    from aulib.batch import overlay_file, overlay_misfit

    kind, fits = overlay_file(overlay, unique)
    if kind is not None and not fits:
        _fail(escape(overlay_misfit(overlay, kind, refused=True)))
    # and where it goes can be written, as -o is checked: a read-only folder was found after the whole run, which
    # then warned "overlay not written" and exited 0
    _writable_folders(overlay.parent if kind is not None else overlay, name=f"--overlay {overlay}")


def _overlay_name(overlay: Path | None) -> None:
    """Refuse an --overlay named like a picture or a clip aulib cannot write, before any work: ``ov.gif`` for a
    video became a folder named ov.gif holding the overlay, and ``ov.qt`` was analysed, then not written. A
    folder of that name that exists is used as the folder it is."""
    from aulib.batch import OVERLAY_IMAGE_SUFFIXES, OVERLAY_VIDEO_SUFFIXES
    from aulib.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    if overlay is None or overlay.is_dir():
        return
    ext = overlay.suffix.lower()
    if ext in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS and ext not in OVERLAY_IMAGE_SUFFIXES + OVERLAY_VIDEO_SUFFIXES:
        _fail(escape(f"--overlay {overlay}: aulib cannot write {ext} overlays; name a .mp4 (or .mov, .mkv, .avi) for "
                     "one video, a .png or .jpg for one image, or a folder"))


def _check_names(detector: str | None = None, emotion_model: str | None = None) -> None:
    """Refuse an unknown --detector / --emotion-model before any model loads."""
    if detector is not None and detector not in ("retinaface", "dlib"):
        _fail(escape(f"--detector must be retinaface or dlib, not {detector!r}"))
    if emotion_model is not None and emotion_model not in ("cnn", "multitask", "none"):
        _fail(escape(f"--emotion-model must be cnn, multitask or none, not {emotion_model!r}"))


def _positive(**values: float) -> None:
    """Refuse a zero or negative (or NaN) value of a numeric option, e.g. ``--lr``."""
    for name, v in values.items():
        if not v > 0:
            _fail(f"--{name.replace('_', '-')} must be > 0, not {v}")


def _data_dir(data: Path, *needed: str) -> Path:
    """The --data folder, checked before any work: it must exist and hold the ``needed`` subfolders."""
    if not data.is_dir():
        _fail(escape(f"{data}: no such folder (--data must be the folder holding ckplus48/ and ferplus/)"))
    missing = [n for n in needed if not (data / n).is_dir()]
    if missing:
        _fail(escape(f"{data}: has no {' or '.join(m + '/' for m in missing)} folder (wrong --data?)"))
    return data


def _inputs(paths: list[str], out: Path | str | None, overlay: Path | None = None) -> list[Path]:
    """Check the output format before any work, then expand folders; usage errors exit 2. The
    arguments go to :func:`aulib.io.expand_inputs` as given (text): it refuses an empty one (a
    ValueError, one error line), which ``Path("")`` would have turned into "." (the working folder).
    Files a folder scan found inside the ``overlay`` folder are aulib's own drawings, left out (said)."""
    from aulib.io import expand_inputs
    from aulib.table import table_format

    if out is not None:
        try:
            table_format(out)
        except ValueError as e:
            _fail(escape(str(e)))
    try:
        os.getcwd()
    except OSError:  # every relative name (and os.path.abspath) needs it: one line, not "[Errno 2]" naming nothing
        if any("://" not in str(p) and not os.path.isabs(p) for p in [*paths, *([out] if out is not None else [])]):
            _fail("the working folder no longer exists (deleted?): cd into a folder, or give absolute paths")
    skipped: list[Path | str] = []
    files = expand_inputs(paths, skipped)  # a folder with nothing to analyse, or that cannot be listed, is an input row
    files = _outside_overlay(files, paths, overlay)
    if not files:
        _fail("no input files found")
    if skipped:  # said, so a folder's other files are not taken for lost rows
        shown = ", ".join(str(p) for p in skipped[:3]) + (" …" if len(skipped) > 3 else "")
        err.print(f"note: {len(skipped)} file{'s' if len(skipped) > 1 else ''} in the folders given "
                  f"{'are' if len(skipped) > 1 else 'is'} hidden (a name starting with '.'), not a regular file (a "
                  f"FIFO, socket or device) or neither an image nor a video (by name and content), not analysed: "
                  f"{escape(shown)}")
    return files


def _outside_overlay(files: list, paths: list[str], overlay: Path | None) -> list:
    """``files`` less those a folder scan found in the ``overlay`` folder when that is a folder below a scanned
    one: with ``--overlay d/ov`` inside the input folder ``d``, the next run — a ``--resume`` too — analysed the
    overlays of the last one as photos (boxes and labels drawn on their faces: every row twice) or was refused
    for overwriting them. A file named on the command line is kept."""
    if overlay is None:
        return files
    from aulib.storage import is_url

    root = Path(os.path.abspath(overlay))
    named = {os.path.abspath(p) for p in paths if not is_url(p)}
    # a folder of its own below a scanned folder (the scanned folder itself as --overlay: its photos are inputs,
    # and an overlay that would replace one is refused, as before)
    if not any(root != Path(p) and root.is_relative_to(p) for p in named if os.path.isdir(p)):
        return files

    def ours(f: object) -> bool:
        if is_url(f):
            return False
        p = os.path.abspath(str(f))
        return p not in named and (Path(p) == root or Path(p).is_relative_to(root))

    kept, left = [], []
    for f in files:
        (left if ours(f) else kept).append(f)
    if left:
        err.print(f"note: {len(left)} file{'s' if len(left) > 1 else ''} in the --overlay folder "
                  f"{escape(str(overlay))} left out (aulib's drawn copies, not inputs; name a file to analyse it)")
    return kept


def _writable_table(out: Path, files: list) -> None:
    """Usage error unless ``out`` can be written and is not one of ``files`` (its folder is made)."""
    from aulib.batch import refuse_overwriting_inputs

    refuse_overwriting_inputs([out] * len(files), files, "output table")
    if out.is_dir():
        _fail(escape(f"{out}: is a directory; give a table file name (.csv, .parquet, .json)"))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        existed = out.exists()
        with open(out, "ab"):
            pass
        if not existed:
            out.unlink()
    except OSError as e:
        _fail(escape(f"{out}: cannot write the table ({e.strerror or e})"))


def _said_duplicates(duplicates: list[str]) -> None:
    if duplicates:
        err.print(f"note: {len(duplicates)} inputs given more than once, analysed once: "
                  + escape(", ".join(duplicates[:5])) + (" …" if len(duplicates) > 5 else ""))


@app.command()
def faces(
    paths: list[str] = typer.Argument(..., help="Images or folders (recursive); wildcard patterns ('*.jpg')."),
    out: Path | None = typer.Option(None, "-o", "--out", help="Write the table (.csv, .parquet, .json)."),
    overlay: Path | None = typer.Option(None, "--overlay", help="Folder for annotated copies of each image "
                                        "(for a single image, a .png/.jpg path)."),
    cropped: bool = typer.Option(False, "--cropped", help="Each image is one already-cropped face."),
    detector: str = typer.Option("retinaface", "--detector", help="retinaface or dlib."),
) -> None:
    """Detect faces and 68 landmarks: one row per face (input, frame, timestamp, face, success, error, face box
    and score, x_0..x_67, y_0..y_67)."""
    from aulib.faces_table import faces_table
    from aulib.table import counted, write_table

    _check_names(detector=detector)
    _local_folder("--overlay", overlay)
    _overlay_name(overlay)
    files = _inputs(paths, out, overlay)
    from aulib.batch import dedupe

    files, duplicates = dedupe(list(files))  # as analyze: an input named twice (a folder and a file in it) once
    _overlay_fits(overlay, files)
    if out is not None:  # before the work, as analyze does: a table that cannot be written must not cost the run
        _writable_table(out, files)
    _said_duplicates(duplicates)
    with contextlib.ExitStack() as stack:
        if out is not None:
            # the one-writer lock `analyze` takes: run beside an `analyze -o` of the same table, this replaced it with
            # its own rows while that run went on and said "wrote 72 rows" — the 72 rows were lost, both exited 0
            from aulib.batch import output_lock

            stack.enter_context(output_lock(out.with_name(out.name + ".lock"), out))
        with _progress(len(files)) as prog:
            task = prog.add_task("faces", total=len(files))
            df = faces_table(files, cropped=cropped, detector=detector, overlay=overlay,
                             on_done=lambda _: prog.advance(task),
                             warn=lambda m: err.print(f"[yellow]warning:[/yellow] {escape(m)}"))
        if out is not None:
            write_table(df, out)
            # an `analyze` run's metadata and progress log beside a table this run replaced described that table:
            # `--resume` onto this one compared its options with them
            for stale in (".meta.json", ".done"):
                out.with_name(out.name + stale).unlink(missing_ok=True)
    if out is not None:
        err.print(f"wrote {counted(len(df), 'row')} to {escape(str(out))}")
    else:
        cols = ["input", "face", "success", "face_x", "face_y", "face_width", "face_height", "face_score", "error"]
        _out(df[cols].to_string(index=False))
    if _nothing_readable(df):
        _nothing_read(df["input"].nunique())


@app.command()
def analyze(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(..., help="Images, folders (recursive, sorted) or videos, mixed; wildcard "
                                      "patterns ('*.jpg', 'clips/**/*.mp4'); also URLs (s3://bucket/prefix/, gs://…, "
                                      "https://…, file://…)."),
    out: str | None = typer.Option(None, "-o", "--out", help="Write the full table (.csv, .parquet, .json); a folder "
                                   "or URL prefix ending with / (any URL) writes partitioned Parquet."),
    cropped: bool = typer.Option(False, "--cropped", help="Each image is one already-cropped face (48×48 crops)."),
    emotion_model: str = typer.Option("cnn", "--emotion-model", help="cnn, multitask or none."),
    detector: str = typer.Option("retinaface", "--detector", help="retinaface or dlib."),
    overlay: Path | None = typer.Option(None, "--overlay", help="Annotated copies: a folder (<stem>_overlay.mp4 "
                                        "per video, .jpg per JPEG photo, .png per other photo, in the inputs' "
                                        "subfolders) or, for a single video, "
                                        "an .mp4 path, for a single photo, a .png/.jpg path."),
    every: int = typer.Option(1, "--every", min=1, help="Video: analyse every N-th frame."),
    fps: float | None = typer.Option(None, "--fps", min=0.01, callback=_frame_rate,
                                     help="Video: at most F frames per second of video (the first frame of "
                                          "each 1/F s; with --every, the first of those it keeps: use one of the "
                                          "two for even spacing)."),
    detect_every: int = typer.Option(10, "--detect-every", min=1,
                                     help="Video: run the face detector every K frames, track in between."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Video: per-person calibration (features minus the "
                                   "face's neutral estimate, its least expressive frames, plus the population mean; "
                                   "a track seen for under 2 s is left uncalibrated)."),
    calibrate_mode: str = typer.Option("video", "--calibrate-mode",
                                       help="video (two-pass median) or running (causal, for live use)."),
    max_frames: int | None = typer.Option(None, "--max-frames", min=1, help="Video: stop after N analysed frames."),
    smooth: bool = typer.Option(True, "--smooth/--no-smooth", help="Video: steady each face's AU intensity and "
                                "head-pose traces (zero-phase Gaussian, 0.08 s); --no-smooth: raw per-frame values."),
    interpolate: bool = typer.Option(True, "--interpolate/--no-interpolate", help="Video with --smooth: the "
                                     "networks (emotion CNN, AU heads, iris) run on every third frame of each face, "
                                     "the frames between take the mean of their neighbours (≈ 25 % less work, "
                                     "within the smoothing); --no-interpolate: on every frame."),
    intrinsics: str | None = typer.Option(None, "--intrinsics", help="Camera FX,FY,CX,CY in pixels for head pose "
                                          "in mm/radians (default: OpenFace's, fx = fy = 500·width/640, centre)."),
    gaze: bool = typer.Option(True, "--gaze/--no-gaze", help="--no-gaze: leave the gaze_* columns empty and save "
                              "the iris network (≈3.5 ms per face, the largest single stage)."),
    tta: bool = typer.Option(True, "--tta/--no-tta", help="Images: the emotion is the mean of two networks over "
                             "the face and its mirror image, and the multitask network's AU heads vote with the "
                             "SVMs (≈10 ms more per face). --no-tta: one network, SVM AUs. Videos: one network, "
                             "never flipped, AU heads voting, whatever this option says."),
    per_input: Path | None = typer.Option(None, "--per-input", help="Folder for one table per input."),
    fmt: str | None = typer.Option(None, "--format", help="Format of --per-input tables: csv, parquet or json "
                                   "(default: that of -o, else csv)."),
    resume: bool = typer.Option(False, "--resume", help="Skip inputs a previous run already wrote to -o/--per-input "
                                "(same options required); redo inputs that could not be read or analysed."),
    dask: bool = typer.Option(False, "--dask", help="One Dask task per input on a local cluster (worker processes)."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler tcp://HOST:PORT (implies --dask)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Local Dask cluster workers (default: cores)."),
    partitioned: bool = typer.Option(False, "--partitioned", help="-o is a folder/prefix: one Parquet file per "
                                     "input plus _aulib_manifest.json (implied by a URL or a trailing /)."),
    retries: int = typer.Option(2, "--retries", min=0, help="Partitioned output: resubmit an input whose task "
                                "failed (store error, lost worker) up to N times, then record its error row."),
) -> None:
    """AU occurrence, AU intensity, emotion-rule percentages and CNN emotion for every face (every frame of a video)."""
    from rich.markup import escape

    from aulib.batch import AnalyzerSpec, is_partitioned, partitioned_root, run_batch
    from aulib.storage import redact
    from aulib.table import counted, report, table_format, table_text

    _local_folder("--per-input", per_input)
    _local_folder("--overlay", overlay)
    _overlay_name(overlay)
    if partitioned and out is None:
        _fail("--partitioned needs -o (the folder or URL prefix to write the parts to)")
    if out is not None and str(out).lower().startswith("memory://"):  # "wrote 1 row … to memory://out/", then gone
        _fail(escape(f"{out}: a memory:// output lives in this process and is gone when the command ends: give a "
                     "file, a folder or an object-store URL (memory:// is for the Python API)"))
    parted = is_partitioned(out, partitioned)
    if parted:
        try:
            partitioned_root(out, per_input)  # a .csv name, --per-input: refused before any work
        except ValueError as e:
            _fail(escape(redact(str(e))))
    out_arg: Path | str | None = out if parted or out is None else Path(out)
    files = _inputs(paths, None if parted else out_arg, overlay)
    from aulib.batch import dedupe

    unique = dedupe(list(files))[0]  # an input named twice is analysed once: the bar counted it twice (1/4)
    _overlay_fits(overlay, unique)
    if calibrate_mode not in ("video", "running"):
        _fail(f"--calibrate-mode must be video or running, not {calibrate_mode!r}")
    if fmt is None:
        fmt = table_format(out_arg) if out_arg is not None and not parted else "csv"
    elif fmt.lower() not in ("csv", "parquet", "json"):
        _fail(f"--format must be csv, parquet or json, not {fmt!r}")
    else:
        fmt = fmt.lower()  # as -o x.CSV is taken (--format CSV was refused)
    if resume and out is None and per_input is None:
        _fail("--resume needs -o or --per-input (where the finished inputs are)")
    _check_names(detector=detector, emotion_model=emotion_model)  # in the options' words, as bench says it
    # for the group's Ctrl-C handler: click shares one ``meta`` among a command's nested contexts
    ctx.meta[_RESUMABLE] = out is not None or per_input is not None
    camera = None
    if intrinsics is not None:
        try:
            camera = tuple(float(v) for v in intrinsics.split(","))
        except ValueError:
            camera = ()
        if len(camera) != 4 or not all(math.isfinite(v) for v in camera) or min(camera[:2]) <= 0:
            _fail(escape(f"--intrinsics must be four numbers FX,FY,CX,CY with FX, FY > 0, not {intrinsics!r}"))
    spec = AnalyzerSpec(detector=detector, emotion_model=emotion_model, cropped=cropped,
                        intrinsics=camera, gaze=gaze, tta=tta)  # type: ignore[arg-type]
    analyzer = None
    if not (dask or scheduler):
        try:
            analyzer = spec.build()
        except ValueError as e:
            _fail(str(e))
    video_options = {"every": every, "fps": fps, "detect_every": detect_every, "max_frames": max_frames,
                     "calibrate": calibrate_mode if calibrate else False, "smooth": smooth,
                     "interpolate": interpolate}
    from aulib.io import is_video

    def given(param: str) -> bool:  # on the command line (or the environment), whatever the value
        return getattr(ctx.get_parameter_source(param), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")

    # options that cannot act in this run: said, not silently ignored (the user expected them to act)
    ignored = []
    if cropped and any(is_video(f) for f in files):
        ignored.append("--cropped acts on images only (video frames are searched for faces)")
    if given("calibrate_mode") and not calibrate:
        ignored.append("--calibrate-mode acts with --calibrate only")
    if given("fmt") and per_input is None:
        ignored.append("--format is the --per-input tables' format (-o's comes from its name)")
    if given("workers") and not dask:
        ignored.append("--workers acts with --dask only (the local cluster's size)")
    if given("retries") and not parted:
        ignored.append("--retries acts with partitioned output only (-o folder/ or --partitioned)")
    if given("interpolate") and not smooth:
        ignored.append(f"--{'' if interpolate else 'no-'}interpolate acts with --smooth only (raw traces run every "
                       "network on every frame)")
    for note in ignored:
        err.print(f"[yellow]warning:[/yellow] {note}")
    if not any(is_video(f) for f in files):
        flags = {"smooth": "--smooth" if smooth else "--no-smooth",
                 "interpolate": "--interpolate" if interpolate else "--no-interpolate"}
        unused = [flags.get(p, f"--{p.replace('_', '-')}")
                  for p in ("calibrate", "calibrate_mode", "every", "fps", "detect_every", "max_frames", "smooth",
                            "interpolate")
                  if given(p)]
        if unused:
            err.print(f"[yellow]warning:[/yellow] {', '.join(unused)} "
                      f"{'acts' if len(unused) == 1 else 'act'} on videos only, and no input is a video")
    elif given("tta") and all(is_video(f) for f in files):
        err.print(f"[yellow]warning:[/yellow] --{'' if tta else 'no-'}tta acts on images only, and every input is "
                  "a video (video frames run one network, never flipped)")

    from aulib.analyzer import CroppedVideoWarning, IgnoredOptionWarning

    one_video = len(unique) == 1 and is_video(unique[0]) and not (dask or scheduler)
    with _progress(2 if one_video else len(unique)) as prog:
        task = prog.add_task("analyze", total=len(unique))
        if one_video:  # a long video gets a frame counter instead of a 0/1 bar
            # total: frames the container declares or implies (0: unknown, then the bar follows the count)
            # (at most --max-frames: "50/18000" for a run that stops at 50)
            cap = video_options.get("max_frames") or 0
            video_options["progress"] = lambda done, total: prog.update(
                task, completed=done, total=max(min(total, cap) if cap and total else total, done))
        elif not (dask or scheduler):  # a video among several inputs: its frames counted beside the bar (the bar
            # stood still for as long as a long clip took, only the timer moving)
            video_options["progress"] = lambda done, total: prog.update(
                task, description=f"analyze (video frame {done}{f'/{total}' if total else ''})")

        def input_done(_: object) -> None:
            prog.update(task, advance=1, description="analyze")

        try:
            with warnings.catch_warnings():
                # --cropped with videos and --interpolate without --smooth were named once, above (the API warns
                # for each video; the command passes interpolate whether or not it was given)
                warnings.simplefilter("ignore", CroppedVideoWarning)
                warnings.simplefilter("ignore", IgnoredOptionWarning)
                res = run_batch(files, spec, out=out_arg, per_input=per_input, per_input_format=fmt, resume=resume,
                                dask=dask, scheduler=scheduler, workers=workers, overlay=overlay,
                                video_options=video_options, analyzer=analyzer,
                                keep_table=out is None and per_input is None,
                                progress=None if one_video else input_done,
                                partitioned=partitioned, retries=retries)
        except (OSError, ValueError) as e:  # unreachable scheduler, unwritable output, locked, --resume mismatch
            _drop(prog)
            _fail(escape(table_text(redact(error_line(e)))))
        # a finished run's bar ends full: inputs --resume skipped were never counted (3/5 for a complete run), and a
        # video that declares more frames than it holds stopped at 95/98
        if one_video:
            prog.update(task, total=prog.tasks[0].completed)
        else:
            prog.update(task, completed=len(unique))
    # user-provided text (paths: [x] is not markup, odd bytes are shown as \xNN) is escaped for rich
    for note in res.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(note)}")
    _said_duplicates(res.duplicates)
    if res.skipped:
        err.print(f"--resume: skipped {counted(len(res.skipped), 'input')} already done")
    if out is not None or per_input is not None:
        where = escape(" and ".join(table_text(redact(str(x))) for x in (out, per_input) if x is not None))
        err.print(f"wrote {counted(res.rows, 'row')} for {counted(len(res.analysed), 'input')} to {where}")
        err.print(f"summary: {escape(res.summary())}")
        if res.failed:
            err.print(f"failed inputs ({len(res.failed)}, error rows written): "
                      + escape(", ".join(res.failed[:5])) + (" …" if len(res.failed) > 5 else ""))
    else:
        _out(report(res.table))
    if res.analysed and not res.skipped and len(res.failed) == len(res.analysed):
        _nothing_read(len(res.failed))


@app.command()
def bench(
    video: Path = typer.Argument(..., help="Video file to time."),
    frames: int | None = typer.Option(None, "--frames", min=1, help="Only the first N frames."),
    detect_every: int = typer.Option(10, "--detect-every", min=1, help="Detector every K frames."),
    emotion_model: str = typer.Option("cnn", "--emotion-model", help="cnn, multitask or none."),
    detector: str = typer.Option("retinaface", "--detector", help="retinaface or dlib."),
    openface: Path | None = typer.Option(None, "--openface", envvar="AULIB_OPENFACE",
                                         help="OpenFace 2 FeatureExtraction binary: also time both tools as whole "
                                         "processes on the clip, in turn, and print the time ratio."),
    pairs: int = typer.Option(3, "--pairs", min=1, help="Runs of each tool for --openface."),
    gaze: bool = typer.Option(True, "--gaze/--no-gaze", help="--no-gaze: time the pipeline without gaze."),
) -> None:
    """Frames per second of the full video pipeline and ms per stage (the last line reads "N fps")."""
    from aulib.bench import bench as run_bench
    from aulib.bench import paired_openface

    _check_names(detector=detector, emotion_model=emotion_model)
    if openface is not None and not (openface.is_file() and os.access(openface, os.X_OK)):
        _fail(escape(f"{openface}: not an executable OpenFace FeatureExtraction binary (--openface)"))
    if openface is None and pairs != 3:  # said, not silently ignored
        err.print("[yellow]warning:[/yellow] --pairs acts with --openface only (no paired run without it)")
    held: list[str] = []  # each line is printed when the next comes: "N fps" must stay the last line

    def log(line: str) -> None:  # through _out: with stdout closed the figures were lost and the exit was 0
        if held:
            _out(held.pop())
        held.append(line)

    if openface is not None and frames:  # checked before the bench runs, not after
        _fail("--frames limits aulib only (OpenFace always reads the whole clip): time the whole clip for the "
              "paired ratio, without --frames")
    run_bench(video, frames=frames, detect_every=detect_every, emotion_model=emotion_model, detector=detector,
              log=log, gaze=gaze)
    if openface is not None:
        paired_openface(video, openface, pairs=pairs, frames=frames, log=_out)
    _out(held.pop())


@app.command()
def plot(
    table: Path = typer.Argument(..., help="A table written by aulib analyze (.csv, .parquet, .json)."),
    out: Path = typer.Option(..., "-o", "--out", help="Image to write (.png, .jpg, .pdf, .svg)."),
    input_name: str | None = typer.Option(None, "--input", help="Which input of the table (default: the first "
                                          "with an analysed face)."),
    face: int | None = typer.Option(None, "--face", help="Which face id (default: all faces)."),
    aus: str | None = typer.Option(None, "--aus", help="AUs to show, e.g. 6,12,25 (default: all)."),
    smooth: float | None = typer.Option(None, "--smooth", min=0, callback=_finite,
                                        help="Video: centred rolling mean over this many seconds (e.g. 0.5)."),
    style: str = typer.Option("auto", "--style", help="Video AUs: lines (one small panel per AU), heatmap "
                              "(AUs × time) or auto (lines up to 6 AUs)."),
) -> None:
    """AU intensities (FACS names) and emotions over time (video) or one panel per face (image)."""
    from aulib.plot import parse_aus, plot_table

    # errors (bad --aus, unknown AU/input/face, foreign table): one line via _ErrorHandlingGroup
    with _said_once():
        plot_table(table, out, input_name=input_name, face=face, aus=parse_aus(aus), smooth=smooth, style=style)
    _unfinished(table)
    err.print(f"wrote {escape(str(out))}")


@contextlib.contextmanager
def _said_once() -> Iterator[None]:
    """Reading the table, its cut last row is not warned of: :func:`_unfinished` says it, in one line."""
    from aulib.table import CutTableWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CutTableWarning)
        yield


def _unfinished(table: Path) -> None:
    """Warn that ``table`` is from a run that has not finished (``plot``, ``report``)."""
    from aulib.plot import unfinished_run

    note = unfinished_run(table)
    if note:
        err.print(f"[yellow]warning:[/yellow] {escape(note)}")


@app.command()
def report(
    table: Path = typer.Argument(..., help="A table written by aulib analyze (.csv, .parquet, .json)."),
    out: Path = typer.Option(..., "-o", "--out", help="HTML page to write (.html)."),
    video: Path | None = typer.Option(None, "--video", help="The analysed video, for thumbnails of the top moments."),
    input_name: str | None = typer.Option(None, "--input", help="Which input of the table (default: the first "
                                          "with an analysed face)."),
    face: int | None = typer.Option(None, "--face", help="Which face id (default: all faces)."),
    smooth: float = typer.Option(0.5, "--smooth", min=0, callback=_finite,
                                 help="Seconds of smoothing for the timeline and top moments (0: none)."),
) -> None:
    """A self-contained HTML summary of one input: frames with a face, per-AU mean and % present (FACS names),
    emotion timeline, top moments, run settings and model versions."""
    from aulib.report_html import write_report

    with _said_once():
        write_report(table, out, input_name=input_name, face=face, video=video, smooth=smooth or None)
    _unfinished(table)
    err.print(f"wrote {escape(str(out))}")


@app.command("to-openface")
def to_openface(
    table: Path = typer.Argument(..., help="A table written by aulib analyze (.csv, .parquet, .json, or a "
                                 "partitioned folder)."),
    out_arg: str = typer.Option(..., "-o", "--out", help="The OpenFace-style .csv to write (a table of one input), "
                                "or a folder for one per input (a table of several: an existing folder, or end it "
                                "with /)."),
) -> None:
    """An aulib table in OpenFace 2's FeatureExtraction CSV layout (", " between fields, frames from 1, 0 where
    not estimated; one file per input), for scripts written for OpenFace's."""
    from aulib.batch import output_paths
    from aulib.plot import check_table, read_source
    from aulib.table import openface_csv, table_text, text_path

    out = Path(out_arg)
    with _said_once():  # a file, or a partitioned folder, as plot and report read it (landmarks kept)
        df, name = read_source(table, landmarks=True)
    _unfinished(table)  # a cut last row, a run still going: said, as plot and report say it
    if "input" not in df.columns:  # OpenFace's own CSV (plot reads it, numbering its frames from 1)
        _fail(escape(f"{table}: not a table written by aulib analyze (no input column; an OpenFace CSV is in this "
                     "layout already)"))
    df = check_table(df, name)  # not aulib's (a faces table, another program's): refused in one line
    if df.empty:
        _fail(escape(f"{table}: holds no rows: nothing to write"))
    groups = list(df.groupby("input", sort=False))
    folder = out.is_dir() or out_arg.endswith(("/", os.sep))
    if len(groups) > 1 and not folder:
        _fail(escape(f"{table}: holds {len(groups)} inputs, and OpenFace writes one CSV per input: give -o a folder "
                     f"(e.g. -o {out.with_suffix('')}/)"))
    if not folder and out.suffix.lower() != ".csv":
        _fail(escape(f"{out}: OpenFace's tables are CSV: name it .csv"))
    # named after each input's file (a URL's too), as FeatureExtraction names its output
    targets = output_paths([text_path(str(n)) for n, _ in groups], out,
                           lambda n: f"{Path(n).stem.lstrip('.') or 'input'}.csv", text_names=True) if folder \
        else [out]
    source = table.resolve()
    clash = next((t for t in targets if t.resolve() == source), None)
    if clash is not None:  # -o results/ beside results/single_face.csv: the table was replaced by its own export
        _fail(escape(f"{clash}: is the table being read; give another {'folder' if folder else 'name'}"))
    for (name, rows), target in zip(groups, targets):
        problems = sorted({str(e) for e in rows["error"] if e and "no face" not in str(e).lower()})
        for e in problems:
            err.print(f"[yellow]warning:[/yellow] {escape(table_text(str(name)))}: {escape(e)} "
                      "(written as success = 0)")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            tmp.write_text(openface_csv(rows), encoding="utf-8")
            os.replace(tmp, target)
        except OSError as e:  # named as the user gave it, not as its hidden temporary copy
            raise OSError(e.errno, e.strerror or str(e), str(target)) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        err.print(f"wrote {len(rows)} rows of {escape(table_text(str(name)))} to {escape(str(target))}")


@app.command()
def demo() -> None:
    """Analyse the face photo shipped inside the package and print the per-face report."""
    from aulib.analyzer import Analyzer
    from aulib.table import report

    sample = Path(__file__).resolve().parent / "data" / "sample_face.jpg"
    _out(report(Analyzer().analyze(sample)))


@app.command("app")
def app_cmd(
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port to serve on."),
    host: str = typer.Option("localhost", "--host", help="Address to listen on: 0.0.0.0 for all interfaces "
                             "(the camera then needs https or a localhost tunnel in the browser)."),
    max_upload_mb: int = typer.Option(500, "--max-upload-mb", min=1, help="Largest upload accepted, in MB."),
) -> None:
    """Start the web app (Streamlit): live webcam, image and video pages (needs the 'app' extra)."""
    import importlib.util
    import os
    import re
    import socket

    from aulib.app import check_settings, streamlit_command

    try:
        check_settings()
    except ValueError as e:
        _fail(escape(str(e)))
    missing = [m for m in ("streamlit", "streamlit_webrtc", "aiortc") if importlib.util.find_spec(m) is None]
    if missing:
        _fail(escape(f"{', '.join(missing)} not installed: pip install 'aulib[app]'"))
    if not re.fullmatch(r"[A-Za-z0-9.:_-]{1,253}", host):
        _fail(escape(f"--host {host!r}: not an IP address or host name (e.g. --host 0.0.0.0)"))
    try:
        socket.getaddrinfo(host, port)
    except (OSError, UnicodeError):
        _fail(escape(f"--host {host!r}: not an address or host name this machine can resolve"))
    cmd = streamlit_command(port=port, host=host, max_upload_mb=max_upload_mb)
    sys.stdout.flush()
    # two glibc malloc arenas (unless the user chose): live streams, uploads and results are handled in many short
    # threads, and each arena kept its own peak of freed memory: the server grew 565 → 697 MB over five live-tab
    # and upload cycles, levelling off only with this (its Python objects grew 3 MB). Read at start: set here.
    env = {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
    os.execve(cmd[0], cmd, env)  # streamlit takes over this process: Ctrl-C and signals reach it directly


evaluate_app = typer.Typer(no_args_is_help=True, help="Evaluation reports (printed and written to reports/).")
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.command("faces")
def evaluate_faces_cmd(
    data: Path = DATA, reports: Path | None = typer.Option(None, "--reports", help=REPORTS_HELP),
) -> None:
    """Detector comparison on the samples, ms per stage, --cropped face check (share of CK+/FER crops kept,
    of non-faces refused) → reports/faces.md."""
    from aulib.evaluate_faces import evaluate_faces
    from aulib.training import REPORTS

    data = _data_dir(data, "ckplus48", "ferplus", "samples")  # first: a mistyped --data made the output folders
    _writable_folders(reports or REPORTS)  # before the work, as train does (it failed after it)
    evaluate_faces(data, reports or REPORTS, log=typer.echo)


@evaluate_app.command("occlusion")
def evaluate_occlusion_cmd(
    data: Path = DATA, reports: Path | None = typer.Option(None, "--reports", help=REPORTS_HELP),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N FER2013Valid faces."),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
) -> None:
    """Emotion accuracy and AU F1 on real faces with synthetic occluders (hand, bar, noise over brows, eyes
    or mouth) against the same faces clean → reports/occlusion.md."""
    from aulib.training import CACHE, REPORTS
    from aulib.training.occlusion import evaluate_occlusion

    data = _data_dir(data, "ckplus48", "ferplus", "samples")  # first: a mistyped --data made the output folders
    # before the work, as train does: a --reports that is a file failed after 6 minutes of evaluation
    _writable_folders(reports or REPORTS, cache or CACHE)
    md = evaluate_occlusion(data, reports or REPORTS, log=typer.echo,
                            limit=limit, cache_dir=cache or CACHE)
    typer.echo(f"report: {md}")


@train_app.command("svm")
def train_svm_cmd(data: Path = DATA, out: Path | None = typer.Option(
                      None, "--out", help="Folder for au_svm.npz (default: aulib/models, i.e. ship it)."),
                  cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
                  reports: Path | None = typer.Option(None, "--reports", help=REPORTS_HELP)) -> None:
    """AU occurrence: one class-balanced linear SVM per AU, nested subject-grouped CV."""
    from aulib.models import MODELS_DIR
    from aulib.training import CACHE, REPORTS
    from aulib.training.au import train_svm, write_report

    out = out or MODELS_DIR
    data = _data_dir(data, "ckplus48")  # first: a mistyped --data made the output folders
    _writable_folders(out, reports or REPORTS, cache or CACHE)
    rep = train_svm(data, out, cache_dir=cache or CACHE, log=err.print)
    _register_au(out / "au_svm.npz", rep, "aulib train svm")  # first: the bank is in place, its entry must be too
    md = write_report(rep, None, reports or REPORTS)
    err.print("retrain the intensity SVRs too (aulib train svr): both must use the same CNN embedding")
    err.print(f"report: {md}")


@train_app.command("svr")
def train_svr_cmd(data: Path = DATA, out: Path | None = typer.Option(
                      None, "--out", help="Folder for au_svr.npz (default: aulib/models, i.e. ship it)."),
                  cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
                  reports: Path | None = typer.Option(None, "--reports", help=REPORTS_HELP)) -> None:
    """AU intensity (0–5): one linear ε-SVR per AU, subject-grouped CV."""
    from aulib.models import MODELS_DIR
    from aulib.training import CACHE, REPORTS
    from aulib.training.au import train_svr, write_report

    out = out or MODELS_DIR
    data = _data_dir(data, "ckplus48")  # first: a mistyped --data made the output folders
    _writable_folders(out, reports or REPORTS, cache or CACHE)
    rep = train_svr(data, out, cache_dir=cache or CACHE, log=err.print)
    _register_au(out / "au_svr.npz", rep, "aulib train svr")
    md = write_report(None, rep, reports or REPORTS)
    err.print(f"report: {md}")


@train_app.command("cnn")
def train_cnn_cmd(
    data: Path = DATA, out: Path | None = typer.Option(None, "--out", help="Run folder (default: the repo's "
                                                       "runs/emotion)."),
    epochs: int = typer.Option(12, "--epochs", min=1, max=10000),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", min=0, callback=_finite),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    resume: bool = typer.Option(True, "--resume/--restart"),
    install: bool = typer.Option(True, "--install/--no-install", help="Ship the best ONNX in aulib/models."),
    ema: float = typer.Option(0.999, "--ema", min=0.0, max=1.0, callback=_finite,
                              help="EMA decay of the weights per step (0: validate the raw weights)."),
    install_as: str = typer.Option("emotion_cnn.onnx", "--install-as", help="emotion_cnn.onnx (the emotion "
                                   "model) or emotion_cnn_ema.onnx (second member of the image ensemble)."),
) -> None:
    """Fine-tune ImageNet EfficientNet-Lite0 for 8-class FER+ emotion (needs the `train` extra)."""
    from aulib.training import CACHE, RUNS
    from aulib.training.cnn import train_emotion

    _positive(lr=lr)
    if ema >= 1:  # a decay of 1 never moves the averaged copy: the untrained network was validated and shipped
        _fail(f"--ema must be below 1 (0: no averaging), not {ema}")
    if install_as not in ("emotion_cnn.onnx", "emotion_cnn_ema.onnx"):
        _fail(f"--install-as must be emotion_cnn.onnx or emotion_cnn_ema.onnx, not {install_as!r}")
    _not_the_models_folder(out)
    data = _data_dir(data, "ferplus")
    _writable_folders(*([cache] if cache else []))
    path = train_emotion(data, out or RUNS / "emotion", epochs, batch_size=batch_size, lr=lr, seed=seed,
                         resume=resume, cache_dir=cache or CACHE, install=install, ema=ema or None,
                         install_as=install_as)
    typer.echo(path)


@train_app.command("multitask")
def train_multitask_cmd(
    data: Path = DATA, out: Path | None = typer.Option(None, "--out", help="Run folder (default: the repo's "
                                                       "runs/multitask)."),
    epochs: int = typer.Option(15, "--epochs", min=1, max=10000, help="Passes over the CK+ faces."),
    init_from: Path | None = typer.Option(
        None, "--init-from", help="Emotion run folder or best.pt to start from (default: the repo's runs/emotion)."),
    folds: int = typer.Option(5, "--folds", min=0, help="Subject-grouped CV folds of the AU fusion before the "
                              "final fit (0: skip the CV)."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    reports: Path | None = typer.Option(None, "--reports", help=REPORTS_HELP),
    install: bool = typer.Option(True, "--install/--no-install", help="Ship the ONNX in aulib/models."),
) -> None:
    """Emotion + 17 AU heads on FER+ and every CK+ subject, after a subject-grouped CV of its AU heads
    voting with the SVMs (reports/au.md)."""
    from aulib.training import CACHE, REPORTS, RUNS
    from aulib.training.au import write_report
    from aulib.training.multitask import init_checkpoint, train_multitask

    if folds == 1:
        _fail("--folds must be 0 (no CV) or at least 2")
    _not_the_models_folder(out)
    data = _data_dir(data, "ckplus48", "ferplus")
    try:
        init_checkpoint(init_from or RUNS / "emotion")
    except FileNotFoundError as e:
        _fail(escape(str(e)))
    path, report = train_multitask(data, out or RUNS / "multitask", epochs, init_from=init_from or RUNS / "emotion",
                                   folds=folds, seed=seed, cache_dir=cache or CACHE, install=install,
                                   log=err.print)
    if report is not None:
        err.print(f"report: {write_report(None, None, reports or REPORTS, fusion=report)}")
    typer.echo(path)


@train_app.command("quantize")
def train_quantize_cmd(
    model: Path = typer.Argument(..., help="A training run's (float32) emotion_cnn.onnx or multitask_cnn.onnx."),
    data: Path = DATA, cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    install: bool = typer.Option(False, "--install/--no-install", help="Ship the int8 ONNX in aulib/models "
                                 "(then retrain the AU models on its embedding)."),
) -> None:
    """Int8 copy of a trained CNN (≈2.3× faster, same FER+ accuracy, noisier AU traces: not shipped by
    default); prints float32 vs int8 FER2013Valid accuracy."""
    from aulib.training import CACHE
    from aulib.training.quantize import quantize_run

    if not model.is_file():
        raise typer.BadParameter(f"{model}: no such file", param_hint="MODEL")
    from aulib.models import MODELS_DIR

    if model.resolve().parent == MODELS_DIR:  # its int8 copy and sidecar were written into the package
        _fail(f"{model}: a shipped network; quantise a training run's copy (or copy it to a folder of its own "
              "first): the int8 file is written beside MODEL")
    path = quantize_run(model, _data_dir(data, "ferplus"), install=install, cache_dir=cache or CACHE, log=err.print)
    if install:
        err.print("retrain the AU banks (aulib train svm; aulib train svr): they read this CNN's embedding")
    typer.echo(path)


@evaluate_app.command("cnn")
def evaluate_cnn_cmd(data: Path = DATA,
                     cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
                     reports: Path | None = typer.Option(None, "--reports", help=REPORTS_HELP),
                     bench: bool = typer.Option(True, "--bench/--no-bench"),
                     update_manifest: bool = typer.Option(False, "--update-manifest",
                                                          help="Record the figures in the models' manifest.")) -> None:
    """FER2013Valid accuracy, per-class recall, confusion matrix, multitask AU F1 → reports/cnn.md."""
    from aulib.training import CACHE, REPORTS
    from aulib.training.evaluate import evaluate_emotion, render_markdown

    data = _data_dir(data, "ferplus", "ckplus48")  # first: a mistyped --data made the output folders
    _writable_folders(reports or REPORTS, cache or CACHE)  # before the work, as train does (it failed after it)
    result = evaluate_emotion(data, cache_dir=cache or CACHE,
                              report_dir=reports or REPORTS, bench=bench, update_manifest=update_manifest)
    _out(render_markdown(result))


def _not_the_models_folder(out: Path | None) -> None:
    """Usage error for a training run folder that is the package's models folder: checkpoints were written there
    and the shipped network replaced without its manifest entry (every analysis then refused it as damaged)."""
    from aulib.models import MODELS_DIR

    if out is not None and out.resolve() == MODELS_DIR:
        _fail(f"--out {out}: the shipped models folder; give a run folder of its own (--install ships the result)")


def _writable_folders(*folders: Path, name: str | None = None) -> None:
    """Usage error unless each folder exists or can be made, and takes a file: checked before a training run,
    whose --out or --reports were found unusable only after its whole cross-validation (and before an analysis,
    for its --overlay folder). ``name``: how the error names the folder (default: its path)."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            _fail(escape(f"{name or folder}: cannot write there ({e.strerror or e})"))


def _register_au(path: Path, rep: dict, command: str) -> None:
    """Record a bank written into the package's models folder in the manifest (other folders: nothing)."""
    from aulib.models import MODELS_DIR, register

    figures = {k: v for k, v in rep.items() if k.startswith("mean_")}
    figures["per_au"] = rep["per_au"]
    if path.resolve().parent == MODELS_DIR:
        register(path, {
            "dataset": "CK+ (ckplus48: peak, peak-1, peak-2 and neutral first frames), subject-grouped CV",
            "licence": "CK+ is licensed for non-commercial research only; so are these weights.",
            "command": f"{command} --data ../shared/data", "subjects": rep["subjects"],
            "feature_version": rep["feature_version"], "aus": [r["au"] for r in rep["per_au"]],
            "figures": figures,
        })


def _one_line_listings(*typers: typer.Typer) -> None:
    """Each command's line in its group's ``--help`` list is its docstring's first paragraph as one line: typer
    kept the source's line breaks there ("… face box" / "and score, …" on any screen width), where a command's
    own ``--help`` page reflows them."""
    import inspect

    for t in typers:
        for info in t.registered_commands:
            doc = inspect.getdoc(info.callback) or ""
            if info.short_help is None and doc:
                info.short_help = " ".join(doc.split("\n\n")[0].split())


_one_line_listings(app, train_app, evaluate_app)


def main() -> None:
    """Entry point (``python -m aulib.cli``): the console script's (:func:`aulib.console.main`)."""
    from aulib.console import main as console_main

    console_main()


if __name__ == "__main__":  # pragma: no cover
    main()
