"""Scale-out on real parts: inputs on an S3-compatible server (moto, started here on 127.0.0.1),
a Dask cluster of two worker processes, partitioned Parquet written by the workers, --resume from
the manifest, a worker killed mid-task, credentials kept out of every output."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aulib.batch import AnalyzerSpec, read_manifest, read_partitioned, run_batch
from aulib.io import ImageReadError, expand_inputs, read_image
from aulib.table import read_table
from aulib.video.reader import FrameReader, VideoReadError

from .conftest import input_tree, sample

SPEC = AnalyzerSpec(emotion_model="none")
VIDEO = {"max_frames": 4, "every": 6}
BUCKET = "aulib-test"
SECRET = "SuperSecretKey123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local_inputs(tmp_path_factory) -> Path:
    """in/a.jpg, in/b/multi.jpg, in/b/broken.png (unreadable), in/c/clip.mp4, in/c/other.mp4."""
    root = input_tree(tmp_path_factory.mktemp("scale") / "in", videos=2)
    (root / "c" / "notes.txt").write_text("not an input")  # skipped when listing, as in folders
    return root


@pytest.fixture(scope="module")
def s3(local_inputs):
    """A moto S3 server on 127.0.0.1 holding ``local_inputs`` under s3://aulib-test/in/; the
    environment points boto at it (Dask workers started later inherit it)."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        import fsspec

        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir(BUCKET)
        for f in sorted(local_inputs.rglob("*")):
            if f.is_file():
                fs.put_file(str(f), f"{BUCKET}/in/{f.relative_to(local_inputs).as_posix()}")
        yield fs
    server.stop()


@pytest.fixture(scope="module")
def cluster(s3):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def serial_table(local_inputs, analyzer) -> pd.DataFrame:
    """The reference: a serial run on the local copies."""
    return run_batch(expand_inputs([local_inputs]), SPEC, video_options=VIDEO, analyzer=analyzer).table


def _as_local(df: pd.DataFrame, local_inputs: Path) -> pd.DataFrame:
    """URL names → the local copies' names (in ``input`` and in error messages)."""
    df = df.copy()
    for c in ("input", "error"):
        df[c] = df[c].str.replace(f"s3://{BUCKET}/in", str(local_inputs), regex=False)
    return df


def test_listing_a_prefix_like_a_folder(s3, local_inputs):
    urls = expand_inputs([f"s3://{BUCKET}/in/"])
    local = expand_inputs([local_inputs])
    assert urls == [f"s3://{BUCKET}/in/{p.relative_to(local_inputs).as_posix()}" for p in local]
    assert expand_inputs([f"s3://{BUCKET}/in/c/clip.mp4"]) == [f"s3://{BUCKET}/in/c/clip.mp4"]
    assert expand_inputs([f"s3://{BUCKET}/nothing-here.jpg"]) == [f"s3://{BUCKET}/nothing-here.jpg"]


def test_a_prefix_the_store_refuses_to_list_gets_a_row_and_the_other_inputs_go_on(local_inputs, analyzer, monkeypatch):
    """A bucket that could not be listed (credentials refused) stopped the whole run: one line, exit 2, no table,
    not even the local photo's row; a local folder that cannot be listed gets a row."""
    monkeypatch.setattr("aulib.storage._fs", lambda url: (_Refusing(), url))
    prefix = f"s3://{BUCKET}/in/"
    assert expand_inputs([prefix]) == [prefix]
    df = run_batch([local_inputs / "a.jpg", prefix], SPEC, analyzer=analyzer, keep_table=True).table
    assert df.input.tolist() == [str(local_inputs / "a.jpg"), prefix] and df.success.tolist() == [1, 0]
    assert df.error.iloc[1].startswith(prefix), df.error.iloc[1]


class _Refusing:
    """A file system whose store refuses every request (as S3 with refused credentials does)."""

    def __getattr__(self, name):
        def refuse(*a, **k):
            raise PermissionError("Access Denied")

        return refuse


def test_object_names_with_hash_or_question_mark_are_listed_and_typed(tmp_path):
    """In an object store's (or a file URL's) path ``#`` and ``?`` are part of the name: listing dropped
    such objects silently (read as a fragment or a query), and ``take #2.mp4`` was read as an image. A web
    URL's query still is one. A broken link under a file:// prefix gets its row, as in a local folder."""
    import fsspec

    from aulib.io import is_video

    fs = fsspec.filesystem("memory")
    for n in ("take #2.mp4", "q?x.jpg", "plain.jpg", "notes.txt"):
        fs.pipe(f"/hashq/{n}", b"x")
    assert expand_inputs(["memory://hashq/"]) == ["memory:///hashq/plain.jpg", "memory:///hashq/q?x.jpg",
                                                  "memory:///hashq/take #2.mp4"]
    assert is_video("s3://lab/take #2.mp4") and is_video("file:///d/v?1.mp4")
    assert is_video("https://host/clip.mp4?X-Amz-Signature=abc#t=1") and not is_video("https://host/a.jpg?v=.mp4")
    src = tmp_path / "in"
    src.mkdir()
    (src / "a #1.jpg").write_bytes(sample("single_face.jpg").read_bytes())
    (src / "a #2.jpg").write_bytes(sample("multi_face.jpg").read_bytes())
    (src / "broken.jpg").symlink_to(src / "missing.jpg")
    os.mkfifo(src / "pipe.jpg")
    os.mkfifo(tmp_path / "fifo")
    (src / "to_fifo.jpg").symlink_to(tmp_path / "fifo")  # opening it would block: skipped like the FIFO
    (src / "to_dir.jpg").symlink_to(tmp_path)
    found = expand_inputs([f"file://{src}/"])
    assert [u.rsplit("/", 1)[1] for u in found] == ["a #1.jpg", "a #2.jpg", "broken.jpg"]
    # one table each: cut at the "#", both names were "a " and the second table overwrote the first
    per = tmp_path / "per"
    df = run_batch(found, SPEC, per_input=per).table
    assert df.groupby("input").size().tolist() == [1, 5, 1] and df.error.iloc[-1].endswith("broken.jpg: no such file")
    assert sorted(p.name for p in per.glob("*.csv")) == ["a #1.jpg.csv", "a #2.jpg.csv", "broken.jpg.csv"]


def test_a_chained_url_into_a_zip_archive_is_read(tmp_path):
    """``zip://member::file:///archive.zip`` (fsspec's chained URLs) read "seek of closed file" for every input:
    the archive's file system closed the archive when it was collected, while its member was still open."""
    import zipfile

    from aulib import analyze

    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(sample("single_face.jpg"), "single_face.jpg")
        z.write(sample("single_face.mp4"), "clip.mp4")
    url = f"zip://single_face.jpg::file://{archive}"
    np.testing.assert_array_equal(read_image(url), read_image(sample("single_face.jpg")))
    df = analyze(url)
    assert list(df.success) == [1] and (df.error.fillna("") == "").all()
    clip = analyze(f"zip://clip.mp4::file://{archive}", max_frames=3)
    assert list(clip.frame) == [0, 1, 2] and clip.success.all()


def test_a_web_server_that_cannot_be_reached_or_refuses_is_not_called_a_missing_file(tmp_path):
    """fsspec's HTTP file system raises FileNotFoundError for every failed first request: a refused connection
    and a server answering 403 read "no such file", like a page that is not there."""
    import http.server

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path), **k)

        def do_GET(self):
            if "secret" in self.path:
                self.send_error(403)
            else:
                super().do_GET()

        do_HEAD = do_GET

        def log_message(self, *a):
            pass

    (tmp_path / "face.jpg").write_bytes(sample("single_face.jpg").read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert np.array_equal(read_image(f"{base}/face.jpg"), read_image(sample("single_face.jpg")))
        for url, why in ((f"{base}/gone.jpg", ": no such file$"),
                         (f"{base}/secret.jpg", ": the server answered HTTP 403"),
                         (f"http://127.0.0.1:{closed}/face.jpg", ": cannot reach the server \\(")):
            with pytest.raises(ImageReadError, match=re.escape(url) + why):
                read_image(url)
    finally:
        server.shutdown()


def test_read_image_from_url_and_file_object(s3):
    want = read_image(sample("single_face.jpg"))
    np.testing.assert_array_equal(read_image(f"s3://{BUCKET}/in/a.jpg"), want)
    np.testing.assert_array_equal(read_image(io.BytesIO(sample("single_face.jpg").read_bytes())), want)
    with pytest.raises(ImageReadError, match=rf"^s3://{BUCKET}/in/missing.jpg: no such file"):
        read_image(f"s3://{BUCKET}/in/missing.jpg")
    with pytest.raises(ImageReadError, match="not an image file"):
        read_image(f"s3://{BUCKET}/in/b/broken.png")
    with pytest.raises(ImageReadError) as e:  # credentials in a URL never appear in a message
        read_image(f"s3://AKIAEXAMPLE:{SECRET}@{BUCKET}/in/a.jpg")
    assert SECRET not in str(e.value) and "AKIAEXAMPLE" not in str(e.value) and "***" in str(e.value)


class _Stream(io.RawIOBase):
    """A file object that cannot seek (an HTTP body without ranges, a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._b = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buf) -> int:  # type: ignore[override]
        chunk = self._b.read(len(buf))
        buf[: len(chunk)] = chunk
        return len(chunk)


def test_video_streamed_from_url_and_from_a_stream_equals_the_file(s3, tmp_path, monkeypatch):
    path = sample("single_face.mp4")
    want = [(f.index, f.time, f.image) for f in FrameReader(path, every=10)]
    got = [(f.index, f.time, f.image) for f in FrameReader(f"s3://{BUCKET}/in/c/clip.mp4", every=10)]
    assert len(got) == len(want) > 3
    for (i, t, a), (j, u, b) in zip(got, want):
        assert (i, t) == (j, u)
        np.testing.assert_array_equal(a, b)
    # not seekable: a bounded temporary copy, removed when the reader closes
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    r = FrameReader(_Stream(path.read_bytes()), every=10)
    assert len(list(tmp_path.glob("aulib-stream-*"))) == 1
    frames = [f.index for f in r]
    assert frames == [w[0] for w in want] and not list(tmp_path.glob("aulib-stream-*"))
    monkeypatch.setenv("AULIB_MAX_TEMP_BYTES", "1000")
    with pytest.raises(VideoReadError, match="cannot seek and is larger than"):
        FrameReader(_Stream(path.read_bytes()))
    assert not list(tmp_path.glob("aulib-stream-*"))


def test_s3_inputs_on_dask_into_partitioned_parquet_equal_the_local_run(s3, cluster, local_inputs, serial_table):
    urls = expand_inputs([f"s3://{BUCKET}/in/"])
    out = f"s3://{BUCKET}/out/"
    res = run_batch(urls, SPEC, out=out, video_options=VIDEO, scheduler=cluster.scheduler_address)
    got = read_partitioned(out)
    pd.testing.assert_frame_equal(_as_local(got, local_inputs), serial_table, check_exact=True)
    pd.testing.assert_frame_equal(res.table, got)
    m = read_manifest(out)
    assert [e["input"] for e in m["inputs"]] == urls
    status = {e["input"].rsplit("/", 1)[1]: e["status"] for e in m["inputs"]}
    assert status == {"a.jpg": "done", "broken.png": "failed", "multi.jpg": "done", "clip.mp4": "done",
                      "other.mp4": "done"}
    assert all(e["attempts"] == 1 and e["worker"].startswith("tcp://127.0.0.1:") for e in m["inputs"])
    assert res.failed == [f"s3://{BUCKET}/in/b/broken.png"] and res.frames == 1 + 1 + 4 + 4
    assert res.faces == int((serial_table.success == 1).sum()) and len(res.workers) >= 1
    assert "4 done, 1 failed, 0 skipped" in res.summary()
    # --resume: only the failed input is redone (its attempts add up), the rest is kept
    again = run_batch(urls, SPEC, out=out, video_options=VIDEO, scheduler=cluster.scheduler_address, resume=True)
    assert again.analysed == [f"s3://{BUCKET}/in/b/broken.png"] and len(again.skipped) == 4
    assert next(e for e in read_manifest(out)["inputs"] if e["status"] == "failed")["attempts"] == 2
    pd.testing.assert_frame_equal(read_partitioned(out), got)
    with pytest.raises(ValueError, match="--resume with other options"):
        run_batch(urls, SPEC, out=out, video_options={"every": 3}, resume=True,
                  scheduler=cluster.scheduler_address)


def test_a_killed_worker_still_gives_the_complete_table(s3, cluster, local_inputs, serial_table):
    from distributed import Client

    urls = expand_inputs([f"s3://{BUCKET}/in/"])
    out = f"s3://{BUCKET}/killed/"
    killed: list[int] = []
    with Client(cluster.scheduler_address) as spy:
        pids = spy.run(os.getpid)
        result: dict = {}
        t = threading.Thread(target=lambda: result.update(res=run_batch(
            urls, SPEC, out=out, video_options=VIDEO, scheduler=cluster.scheduler_address)))
        t.start()
        deadline = time.monotonic() + 60
        while not killed and t.is_alive() and time.monotonic() < deadline:
            running = spy.run(lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing])
            for addr, keys in running.items():
                if any("aulib-part" in k for k in keys) and addr in pids:
                    os.kill(pids[addr], signal.SIGKILL)  # the worker process dies mid-task
                    killed.append(pids[addr])
                    break
            time.sleep(0.05)
        t.join(120)
    assert killed, "no task was seen running"
    assert not t.is_alive() and "res" in result
    got = read_partitioned(out)
    pd.testing.assert_frame_equal(_as_local(got, local_inputs), serial_table, check_exact=True)
    assert len(result["res"].analysed) == 5 and result["res"].failed == [f"s3://{BUCKET}/in/b/broken.png"]


def test_credentials_in_urls_never_reach_outputs(s3, analyzer, tmp_path):
    url = f"s3://AKIAEXAMPLE:{SECRET}@{BUCKET}/in/a.jpg"
    out = tmp_path / "parts"
    res = run_batch([url], SPEC, out=out, partitioned=True, analyzer=analyzer)
    df = read_partitioned(out)
    assert df["input"].tolist() == [f"s3://***@{BUCKET}/in/a.jpg"] and df["success"].tolist() == [0]
    assert df["error"].iloc[0].startswith(f"s3://***@{BUCKET}/in/a.jpg: ")
    for f in out.iterdir():
        assert SECRET.encode() not in f.read_bytes() and b"AKIAEXAMPLE" not in f.read_bytes()
    assert res.failed == [f"s3://***@{BUCKET}/in/a.jpg"]


def test_local_partitioned_folder_resume_and_format_checks(local_inputs, analyzer, tmp_path, serial_table):
    files = expand_inputs([local_inputs])
    out = tmp_path / "run"
    done: list = []

    def stop_after_two(p):
        done.append(p)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(files, SPEC, out=f"{out}/", video_options=VIDEO, analyzer=analyzer, progress=stop_after_two)
    kept = json.loads((out / "_aulib_manifest.json").read_text())["inputs"]
    assert [e["input"] for e in kept] == [str(p) for p in files[:2]]  # saved on the way out
    res = run_batch(files, SPEC, out=out, partitioned=True, resume=True, video_options=VIDEO, analyzer=analyzer)
    assert res.skipped == [str(files[0])] and len(res.analysed) == 4  # files[1] (broken.png) is redone
    pd.testing.assert_frame_equal(read_partitioned(out), serial_table, check_exact=True)
    assert sorted(p.name for p in out.glob("*.parquet")) == sorted(e["part"] for e in read_manifest(out)["inputs"])
    assert all(len(read_table(p)) for p in out.glob("*.parquet"))
    with pytest.raises(ValueError, match="not a .csv/.json table"):
        run_batch(files, SPEC, out=f"s3://{BUCKET}/x.csv", analyzer=analyzer)


def test_cli_url_in_url_out_with_summary_and_one_line_errors(s3):
    from typer.testing import CliRunner

    from aulib.cli import app

    runner = CliRunner()
    out = f"s3://{BUCKET}/cli/"
    r = runner.invoke(app, ["analyze", f"s3://{BUCKET}/in/b/", "-o", out, "--emotion-model", "none"])
    assert r.exit_code == 0, r.output
    assert "summary: inputs: 1 done, 1 failed, 0 skipped; 1 frame, 5 faces" in r.output
    assert f"failed inputs (1, error rows written): s3://{BUCKET}/in/b/broken.png" in r.output
    assert read_partitioned(out)["input"].tolist() == [f"s3://{BUCKET}/in/b/broken.png"] + \
        [f"s3://{BUCKET}/in/b/multi.jpg"] * 5
    r = runner.invoke(app, ["analyze", f"s3://{BUCKET}/in/a.jpg", "-o", f"s3://{BUCKET}/x.csv"])
    assert r.exit_code == 2 and "not a .csv/.json table" in r.output and len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["analyze", "gs://some-bucket/x/", "-o", "/tmp/x.csv"])
    assert r.exit_code == 2 and "gs://some-bucket/x/" in r.output and len(r.output.strip().splitlines()) == 1


def test_a_scheduler_that_cannot_be_reached_leaves_the_previous_tables(tmp_path):
    """A mistyped --scheduler port: the run cleared the previous table (and the partitioned parts) before it
    failed to connect, leaving a .done file and an empty manifest; Dask's timeout named no option."""
    import dask.config
    from typer.testing import CliRunner

    from aulib.cli import app

    runner = CliRunner()
    photo = str(sample("single_face.jpg"))
    table, parts = tmp_path / "t.csv", f"{tmp_path}/p/"
    for out in (str(table), parts):
        assert runner.invoke(app, ["analyze", photo, "-o", out]).exit_code == 0
    before = table.read_bytes(), sorted(p.name for p in (tmp_path / "p").iterdir())
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        for out in (str(table), parts):
            res = runner.invoke(app, ["analyze", photo, "-o", out, "--scheduler", f"tcp://127.0.0.1:{port}"])
            assert res.exit_code != 0 and "cannot reach the Dask scheduler given by --scheduler" in res.output, \
                res.output
    assert (table.read_bytes(), sorted(p.name for p in (tmp_path / "p").iterdir())) == before
    assert not (tmp_path / "t.csv.done").exists()
    # addresses Dask cannot use are named with the option, and a refused port is said at once (Dask waited 30 s)
    for address, said in (("localhost", "not a Dask scheduler address for --scheduler"),
                          ("http://localhost:8786", "not a Dask scheduler address for --scheduler"),
                          (f"tcp://127.0.0.1:{port}", "nothing listens on that port")):
        t0 = time.monotonic()
        res = runner.invoke(app, ["analyze", photo, "-o", str(table), "--scheduler", address])
        assert res.exit_code != 0 and said in " ".join(res.output.split()), res.output
        assert time.monotonic() - t0 < 10


def test_file_url_outputs_keep_hash_and_question_mark_in_their_folder_names(tmp_path, analyzer):
    """file://…/run #1/ was written to ".../run " (cut at '#'): "run #1/" and "run #2/" shared one folder and the
    second run deleted the first one's results while saying it wrote to the name given."""
    base = tmp_path.as_uri()
    for run, photo in (("run #1", "single_face.jpg"), ("run ?2", "multi_face.jpg")):
        run_batch([sample(photo)], SPEC, out=f"{base}/{run}/", analyzer=analyzer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run #1", "run ?2"]
    assert read_partitioned(f"{base}/run #1/")["input"].nunique() == 1
    assert len(read_partitioned(f"{base}/run ?2/")) == 5


def test_a_memory_output_with_dask_is_refused_before_any_work():
    """memory:// lives in this process, the Dask workers are others: the CLI said "wrote N rows" and nothing
    survived; the API raised FileNotFoundError."""
    with pytest.raises(ValueError, match="memory:// output lives in this process"):
        run_batch([sample("single_face.jpg")], SPEC, out="memory://aulib-test/run/", dask=True, workers=1)


def test_a_prefix_says_what_it_left_out_and_a_prefix_of_other_files_keeps_its_row():
    """Object keys are listed by extension (their content is not fetched to look at): an upload stored under
    an id without one, and a prefix holding only other files, left the run without a word."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/up/x.jpg", sample("single_face.jpg").read_bytes())
    fs.pipe("/up/4f2a9c", sample("single_face.jpg").read_bytes())
    fs.pipe("/notes/readme.txt", b"not media")
    skipped: list = []
    assert expand_inputs(["memory://up/", "memory://notes/"], skipped) == ["memory:///up/x.jpg", "memory://notes/"]
    assert skipped == ["memory:///up/4f2a9c", "memory:///notes/readme.txt"]
    df = run_batch(expand_inputs(["memory://notes/"]), SPEC).table
    assert len(df) == 1 and df.success.iloc[0] == 0
    assert df.error.iloc[0] == ("memory://notes/: is a directory (prefix) with no file named as an image or a video "
                                "under it")


def test_a_web_server_that_never_answers_costs_its_timeout_not_the_run(local_inputs, analyzer, monkeypatch):
    """A server that accepted the connection and never answered held the whole run (local photos included) for
    aiohttp's 5 minutes per request: more than 7 minutes, nothing written. Now AULIB_URL_TIMEOUT per wait."""
    import socket
    import threading
    import time

    pytest.importorskip("aiohttp")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    stop = threading.Event()

    def accept():  # take connections, read nothing, say nothing
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("AULIB_URL_TIMEOUT", "1")
    url = f"http://127.0.0.1:{server.getsockname()[1]}/a.jpg"
    t0 = time.monotonic()
    try:
        # the server's second input, and its listing checks, do not wait again: 10 requests waited 1 s each
        files = expand_inputs([str(local_inputs / "a.jpg"), url, url.replace("a.jpg", "b.mp4")])
        df = run_batch(files, SPEC, analyzer=analyzer, keep_table=True).table
    finally:
        stop.set()
        for c in held:
            c.close()
        server.close()
    assert time.monotonic() - t0 < 30 and len(held) <= 2, len(held)
    assert df.success.tolist() == [1, 0, 0]
    assert df.error.iloc[1] == f"{url}: no answer from the server within 1 s (AULIB_URL_TIMEOUT)"
    assert df.error.iloc[2].endswith(": no answer from the server within 1 s (AULIB_URL_TIMEOUT)")


def test_a_local_cluster_is_sized_to_the_inputs_cores_and_open_file_limit(monkeypatch):
    """``--workers 10**20`` started processes until the machine ran out of memory; under ``ulimit -n 12`` Dask's
    event loop logged "Too many open files" forever, under 32 the run died with "Nanny failed to start — this is
    a bug in aulib"."""
    import resource

    from aulib import batch

    assert batch._local_workers(None, 1) == 1 and batch._local_workers(3, 10) == 3
    with pytest.raises(OSError, match=r"--workers 100000000000000000000: .* per core"):
        batch._local_workers(10**20, 5)
    monkeypatch.setattr(resource, "getrlimit", lambda what: (12, 12))
    with pytest.raises(OSError, match=r"the open-file limit \(ulimit -n 12\) is too low .* 2 worker\(s\)"):
        batch._local_workers(2, 10)
    raised = []
    monkeypatch.setattr(resource, "getrlimit", lambda what: (12, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda what, limits: raised.append(limits))
    assert batch._local_workers(2, 10) == 2 and raised == [(batch.CLUSTER_FILES + 2 * batch.WORKER_FILES, 4096)]


def test_a_scheduler_address_where_another_service_answers_is_named_so():
    """An SSH server at --scheduler (a mistyped port: tcp://host:22) was reported as "out of memory (Unable to
    allocate 2.82 EiB …)": Dask read its banner as a message length."""
    from aulib.batch import _dask_connect

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]

    def banner() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n" * 64)
                time.sleep(0.5)

    threading.Thread(target=banner, daemon=True).start()
    try:
        with pytest.raises(OSError, match=r"not a Dask scheduler \(what answers there does not speak"):
            _dask_connect(f"tcp://127.0.0.1:{port}", None)
    finally:
        server.close()


@pytest.mark.parametrize("kind", ["combined", "partitioned"])
def test_a_lost_scheduler_stops_the_run_with_one_line_that_says_to_resume(tmp_path, kind):
    """The --scheduler process killed mid-run: Dask printed a 35-line traceback of connection errors, then
    aulib called it "unexpected ClosedClientError … a bug in aulib" and gave no word of --resume. Now one line
    names the lost scheduler and says to resume, and --resume against a new scheduler finishes the table."""
    import subprocess
    import sys

    import dask.config
    from typer.testing import CliRunner

    from aulib.cli import app

    pytest.importorskip("distributed")
    clip = sample("single_face.mp4")
    for i in range(4):
        (tmp_path / f"c{i}.mp4").write_bytes(clip.read_bytes())
    inputs = [str(tmp_path / f"c{i}.mp4") for i in range(4)]
    out = str(tmp_path / "t.csv") if kind == "combined" else f"{tmp_path}/parts/"
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"

    def start() -> list[subprocess.Popen]:
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        s = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", str(port),
                              "--dashboard-address", ":0", "--no-show"], **quiet)
        w = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                              "--no-nanny", "--dashboard-address", ":0"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                             **quiet)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the scheduler listens (the run then waits for the worker)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        return [s, w]

    runner = CliRunner()
    procs = start()
    try:
        result: dict = {}

        def run() -> None:
            result["res"] = runner.invoke(app, ["analyze", *inputs, "-o", out, "--scheduler", address])

        with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):
            t = threading.Thread(target=run)
            t.start()
            deadline = time.monotonic() + 120
            while t.is_alive() and time.monotonic() < deadline and not _some_input_finished(tmp_path, kind):
                time.sleep(0.1)
            procs[0].kill()  # the scheduler dies mid-run
            t.join(120)
        assert not t.is_alive()
        res = result["res"]
        said = " ".join(res.output.split())
        assert res.exit_code == 2, res.output
        assert f"lost the Dask scheduler ({address})" in said and "--resume" in said, res.output
        assert "bug in aulib" not in said and "Traceback" not in said
        for p in procs:
            p.kill()
            p.wait(30)
        procs = start()
        res = runner.invoke(app, ["analyze", *inputs, "-o", out, "--scheduler", address, "--resume"])
        assert res.exit_code == 0, res.output
    finally:
        for p in procs:
            p.kill()
            p.wait(30)
    got = read_table(out) if kind == "combined" else read_partitioned(out)
    assert sorted(got["input"].unique()) == sorted(inputs) and (got["success"] == 1).all()
    assert got.groupby("input")["frame"].nunique().nunique() == 1  # every clip whole, none twice


def _some_input_finished(folder: Path, kind: str) -> bool:
    """Whether the run into ``folder`` has written some input's rows (a combined table's first rows, a part)."""
    if kind == "combined":
        t = folder / "t.csv"
        return t.exists() and t.read_bytes().count(b"\n") > 1  # more than the header
    return any((folder / "parts").glob("*.parquet"))
