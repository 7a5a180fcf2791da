"""Inputs and outputs on object storage (S3, GCS, MinIO, HTTP, ``file://``) through fsspec.

Why fsspec: one interface for every store a lab may use, and the store's own package (``s3fs``,
``gcsfs``) takes its credentials from the usual places (environment variables such as
``AWS_ACCESS_KEY_ID`` / ``AWS_ENDPOINT_URL``, ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS``,
fsspec's ``FSSPEC_<PROTOCOL>_<OPTION>`` variables and config files). aulib never asks for, prints
or stores credentials: any that are written into a URL (``s3://key:secret@bucket/…``,
``https://user:pw@host/…``, a presigned URL's signature) are replaced by ``***`` in every name
and message aulib shows or writes (:func:`redact`).

A URL is a ``str`` with a scheme (``s3://…``); local inputs stay :class:`pathlib.Path` (a ``Path``
would fold ``s3://`` into ``s3:/``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s]+)@")
_SECRET_KEY = re.compile(r"sig|signature|credential|token|secret|password|passwd|auth|key", re.IGNORECASE)
_QUERY = re.compile(r"(?P<sep>[?&])(?P<k>[^=&#\s]+)=(?P<v>[^&#\s]*)")

# Largest temporary copy of a non-seekable video stream (bytes); AULIB_MAX_TEMP_BYTES overrides it.
MAX_TEMP_BYTES = 8 * 1024**3


class StorageError(ValueError):
    """An input or output URL cannot be listed, read or written; the message names the (redacted) URL."""


class StorageSetupError(StorageError):
    """No URL of this kind can be used here: a protocol fsspec does not know, or whose package is not installed
    (``gs://`` without gcsfs): the whole run is refused in one line, not each input given a row."""


Source = Path | str  # a local path, or a URL (str with a scheme)


def is_url(x: object) -> bool:
    """True for a ``str`` with a URL scheme (``s3://``, ``file://``, ``https://``, …)."""
    return isinstance(x, str) and bool(_URL.match(x))


def _url_secrets(url: str) -> list[str]:
    """The credential strings written into ``url`` (user info and its parts, secret query values)."""
    found: list[str] = []
    m = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#\s]+)@", url)
    if m:
        found += [m.group(1), *m.group(1).split(":")]
    found += [m["v"] for m in _QUERY.finditer(url) if _SECRET_KEY.search(m["k"])]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def redact(text: str, *urls: str) -> str:
    """``text`` with credentials inside URLs replaced by ``***``: the user-info part
    (``s3://key:secret@b`` → ``s3://***@b``) and query values whose name looks like a secret
    (``X-Amz-Signature``, ``X-Amz-Credential``, ``token``, ``sig``, …). ``urls``: the URLs the text
    is about — their credentials are removed wherever they appear (a library's message may quote
    them without the scheme, e.g. as part of a bucket name)."""
    for u in urls:
        for secret in _url_secrets(str(u)):
            text = text.replace(secret, "***")
    text = _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)
    if "://" in text and ("?" in text or "&" in text):
        text = _QUERY.sub(lambda m: f"{m['sep']}{m['k']}={'***' if _SECRET_KEY.search(m['k']) else m['v']}", text)
    return text


def url_name(url: str) -> str:
    """How a URL is named in tables and messages (credentials removed)."""
    return redact(url)


def _is_web(text: str) -> bool:
    return text.split("://", 1)[0].lower() in ("http", "https")


def object_path(source: Source) -> str:
    """The path part of a path or URL, as named: only a web URL has a query and a fragment
    (``https://…/clip.mp4?X-Amz-Signature=…``); in an object store's or a file URL's path ``#`` and
    ``?`` are part of the name (``s3://lab/take #2.mp4``). A chained URL's path is its first member's: a
    ``zip://clip.mp4::file:///x.zip`` was named by ``.zip`` and read as an image."""
    text = str(source)
    if not is_url(source):
        return text
    if "::" in text:  # a chained URL (``zip://dir/a.mp4::s3://lab/x.zip``): the member it reads is named first
        return "/" + text.split("::", 1)[0].split("://", 1)[1].lstrip("/")
    if _is_web(text):
        return urlsplit(text).path
    rest = text.split("://", 1)[1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"


def naming_path(url: str) -> Path:
    """A local-looking path for a URL (``/s3/bucket/key``), to mirror object keys under an output folder
    (``take #2.mp4`` and ``take #3.mp4`` are two names: cut at the ``#`` they shared one output)."""
    parts = urlsplit(redact(url))
    host = parts.netloc.split("@")[-1]
    return Path("/", parts.scheme, host, object_path(redact(url)).lstrip("/"))


def suffix(source: Source) -> str:
    """The file extension of a path or URL (:func:`object_path`), lower case: ``s3://lab/take #2.mp4`` is
    a video (it was read as an image)."""
    return Path(object_path(source)).suffix.lower()


def url_timeout() -> float:
    """Seconds a web server may take to accept a connection, or to send the next bytes (``AULIB_URL_TIMEOUT``,
    default 30): a server that accepted the connection and never answered held the whole run, local inputs
    included, for aiohttp's 5 minutes per request (more than 7 minutes, nothing written)."""
    from aulib.env import number

    return number("AULIB_URL_TIMEOUT", 30.0, 0.1, maximum=1e6)


# Web servers (scheme://host) that let a request wait out AULIB_URL_TIMEOUT in this process: their later requests
# fail at once. fsspec asks a server several times for one input (a listing check, HEAD then GET for its size, the
# read), and a server that never answers held a one-photo run 5 × the timeout (150 s, "no answer within 30 s"),
# every later input of that server as long again.
_UNANSWERED: set[str] = set()


def _server(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.split('@')[-1].lower()}"


def _timed_out(e: BaseException | None) -> bool:
    """Whether ``e`` or an exception it came from is a time-out."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, TimeoutError):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _note_time_out(url: str, e: BaseException) -> None:
    if _is_web(url) and _timed_out(e):
        _UNANSWERED.add(_server(url))


def _unanswered(url: str) -> bool:
    return _is_web(url) and _server(url) in _UNANSWERED


def _fs(url: str) -> tuple[Any, str]:
    import fsspec.core

    options: dict[str, Any] = {}
    if urlsplit(url).scheme in ("http", "https"):
        import aiohttp

        t = url_timeout()
        options["client_kwargs"] = {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=t, sock_read=t)}
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as e:  # e.g. gs:// without gcsfs installed: fsspec's words named no aulib extra
        why = _why(e, url)
        hint = " (pip install 'aulib[s3]')" if "s3fs" in why else ""
        raise StorageSetupError(f"{redact(url)}: {why}{hint}") from None
    except Exception as e:
        unknown = isinstance(e, ValueError) and "Protocol not known" in str(e)  # no URL of its kind works here
        raise (StorageSetupError if unknown else StorageError)(
            f"{redact(url)}: cannot use this URL ({type(e).__name__}: {_why(e, url)})") from None


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec file system of ``url`` and the path inside it (StorageError for an unusable URL)."""
    return _fs(url)


def _why(e: BaseException, url: str = "") -> str:
    return redact(str(e) or type(e).__name__, url)


def list_prefix(url: str, extensions: set[str], skipped: list | None = None) -> list[str]:
    """URLs of the files under a URL prefix (recursively, sorted) with one of ``extensions`` (the others are
    appended to ``skipped`` when it is given: an object store's keys are not opened to look at their
    content); ``[url]`` itself when it names one object (kept whatever its extension, like a local file),
    or when nothing there has such an extension (the input then gets a row saying why, as a local folder
    does: a prefix of other files vanished from the run without a word).

    A store that cannot be listed (no credentials, unreachable endpoint) gives ``[url]`` too: its row says why
    when it is read, as a local folder that cannot be listed gets its row; one such URL stopped the whole run
    (no table, not even the local photos' rows)."""
    if _unanswered(url):  # its row says so, without another wait
        return [url]
    try:
        # (an FTP or SFTP file system connects as it is made: a refused connection stopped the whole run here, the
        # local photos beside it unread; a protocol no URL of which can work here still refuses the run)
        fs, path = _fs(url)
    except StorageSetupError:
        raise
    except StorageError:
        return [url]
    try:
        if not url.endswith("/"):
            try:
                if fs.info(path).get("type") == "file":
                    return [url]
            except Exception as e:  # fsspec's isfile() hid a time-out: the next request waited again
                _note_time_out(url, e)
                if _is_web(url) or _timed_out(e):  # a web page names one object (a listing re-fetched it)
                    return [url]
        found = fs.find(path, withdirs=False, detail=True)
    except Exception as e:  # not found, or not listable: the input's own row says which
        _note_time_out(url, e)
        return [url]
    if not found:
        return [url]
    # files, and broken links (a local folder gives them their "no such file" row too), not FIFOs nor links
    # to one (opening it blocks); an object's name is literal: "take #2.mp4" and "q?.jpg" were dropped as a
    # fragment or a query
    def wanted(p: str, info: dict) -> bool:
        if info.get("type", "file") == "file":
            return True
        return bool(info.get("islink")) and not is_url(p) and not os.path.exists(p)

    files = [p if is_url(p) else fs.unstrip_protocol(p) for p, info in sorted(found.items()) if wanted(p, info)]
    kept = [f for f in files if suffix(f) in extensions]
    if skipped is not None:
        skipped.extend(f for f in files if suffix(f) not in extensions)
    return kept or [url]


def check_object(url: str, kind: type[ValueError] = StorageError) -> dict:
    """The object's fsspec info; ``kind`` (message naming the redacted URL) unless it is a
    non-empty file: missing, a prefix ("directory"), empty, or the store refuses access."""
    return _checked(url, kind, *_fs(url))


def _not_found(e: FileNotFoundError, url: str) -> str:
    """Why a store said "not found": fsspec's HTTP file system raises FileNotFoundError for every failure
    of its first request, so a server that could not be reached (refused, unknown host) or that refused the
    request (403, 500) read "no such file" like a missing page; the cause tells them apart."""
    cause = e.__cause__ or e.__context__
    if type(cause).__name__ == "TooManyRedirects":  # a redirect loop read "no such file"
        return f"too many redirects ({_why(cause, url)})"
    if isinstance(cause, TimeoutError):
        return f"no answer from the server within {url_timeout():g} s (AULIB_URL_TIMEOUT)"
    status = getattr(cause, "status", None)
    if isinstance(status, int) and status not in (404, 410):
        return f"the server answered HTTP {status} ({_why(cause, url)})"  # type: ignore[arg-type]
    if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
        return f"cannot reach the server ({type(cause).__name__}: {_why(cause, url)})"
    if cause is not None and type(cause).__module__.startswith("aiohttp") and status is None:
        # the connection broke (a server that hangs up, a redirect it cannot serve): "no such file" said otherwise
        return f"the server did not give the file ({type(cause).__name__}: {_why(cause, url)})"
    return "no such file"


def _checked(url: str, kind: type[ValueError], fs: Any, path: str) -> dict:
    """:func:`check_object` on a file system already made for ``url``."""
    name = redact(url)
    if _unanswered(url):
        raise kind(f"{name}: no answer from the server within {url_timeout():g} s (AULIB_URL_TIMEOUT)")
    try:
        info = fs.info(path)
    except FileNotFoundError as e:
        _note_time_out(url, e)
        raise kind(f"{name}: {_not_found(e, url)}") from None
    except PermissionError as e:
        raise kind(f"{name}: permission denied ({_why(e, url)})") from None
    except Exception as e:
        _note_time_out(url, e)
        if _timed_out(e):
            raise kind(f"{name}: no answer from the server within {url_timeout():g} s (AULIB_URL_TIMEOUT)") from None
        raise kind(f"{name}: cannot access ({type(e).__name__}: {_why(e, url)})") from None
    if info.get("type") == "directory":
        raise kind(f"{name}: is a directory (prefix) with no file named as an image or a video under it")
    if info.get("size") == 0:
        raise kind(f"{name}: empty file (0 bytes)")
    return info


def open_input(url: str, kind: type[ValueError] = StorageError) -> IO[bytes]:
    """An open binary file object on ``url`` (random access where the store supports ranges: S3, GCS,
    HTTP with ``Accept-Ranges``); errors as in :func:`check_object`.

    The file system stays referenced by the file while it is open: a chained URL's
    (``zip://a.jpg::file:///x.zip``) closes the archive under it when it is collected, and every such input
    read "seek of closed file"."""
    fs, path = _fs(url)
    _checked(url, kind, fs, path)
    try:
        f = fs.open(path, "rb")
    except Exception as e:
        raise kind(f"{redact(url)}: cannot open ({type(e).__name__}: {_why(e, url)})") from None
    try:
        f._aulib_fs = fs
    except AttributeError:  # a file type with __slots__: nothing to keep the archive open with
        pass
    return f


def is_seekable(f: Any) -> bool:
    """True when ``f`` reports random access (``seekable()``), False if it cannot say or fails."""
    try:
        return bool(f.seekable())
    except Exception:
        return False


@contextlib.contextmanager
def temp_copy(f: IO[bytes], name: str, limit: int | None = None) -> Iterator[Path]:
    """A local temporary copy of a stream (for containers that need seeking), removed on exit.

    At most ``limit`` bytes (default: ``AULIB_MAX_TEMP_BYTES`` or :data:`MAX_TEMP_BYTES`), and never
    more than the free space of the temp folder minus 1 GiB: OSError naming the input beyond that.
    """
    from aulib.env import number

    limit = limit if limit is not None else int(number("AULIB_MAX_TEMP_BYTES", MAX_TEMP_BYTES, 0, int, maximum=1 << 62))
    tmpdir = tempfile.gettempdir()
    limit = min(limit, max(0, shutil.disk_usage(tmpdir).free - 1024**3))
    fd, tmp = tempfile.mkstemp(prefix="aulib-stream-", suffix=suffix(name), dir=tmpdir)
    try:
        with os.fdopen(fd, "wb") as out:
            total = 0
            while True:
                block = f.read(1 << 20)
                if not block:
                    break
                total += len(block)
                if total > limit:
                    raise OSError(f"{name}: the stream cannot seek and is larger than the {limit / 1e9:.1f} GB "
                                  "a temporary copy may take (set AULIB_MAX_TEMP_BYTES)")
                out.write(block)
        yield Path(tmp)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def join(root: str, *names: str) -> str:
    """``root`` (local folder or URL prefix) joined with ``names`` by ``/``."""
    return "/".join([root.rstrip("/"), *names])


def put_file(local: Path, url: str) -> None:
    """Upload a finished local file to ``url`` in one piece (the object appears complete or not at all)."""
    fs, path = _fs(url)
    try:
        fs.put_file(str(local), path)
    except Exception as e:
        raise OSError(f"{redact(url)}: cannot write ({type(e).__name__}: {_why(e, url)})") from None


def read_bytes(url: str) -> bytes | None:
    """The bytes of ``url``, or None when it does not exist (other errors: OSError)."""
    fs, path = _fs(url)
    try:
        with fs.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except Exception as e:
        raise OSError(f"{redact(url)}: cannot read ({type(e).__name__}: {_why(e, url)})") from None


def write_bytes(url: str, data: bytes) -> None:
    """Write ``data`` to ``url`` whole (a store's PUT replaces an object atomically)."""
    fs, path = _fs(url)
    try:
        with fs.open(path, "wb") as f:
            f.write(data)
    except Exception as e:
        raise OSError(f"{redact(url)}: cannot write ({type(e).__name__}: {_why(e, url)})") from None


def listing(url: str) -> dict[str, int]:
    """Base names and sizes (bytes) of the files directly under a URL prefix (empty when there is none)."""
    fs, path = _fs(url)
    try:
        return {Path(e["name"]).name: int(e.get("size") or 0) for e in fs.ls(path, detail=True)}
    except FileNotFoundError:
        return {}
    except Exception as e:
        raise OSError(f"{redact(url)}: cannot list ({type(e).__name__}: {_why(e, url)})") from None


def remove(urls: Iterable[str]) -> None:
    """Delete objects (missing ones ignored)."""
    for u in urls:
        fs, path = _fs(u)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)

