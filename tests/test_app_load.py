"""The app under real use: several users at once, refused uploads, bounded memory.

Browser tests (Chromium through Playwright, as in test_app_browser) on a server of their own, with small
upload limits (5 MB) so the size refusal is cheap to provoke:

* a live page keeps its frame rate while another page's video is analysed (and two live pages share
  the machine);
* every class of refused upload (size, type, pixels, unreadable) gives a visible message naming the
  user's file, never a server path or an FFmpeg error number, and the previous result is cleared;
* the server's resident memory returns near its baseline after repeated 100 MP uploads and videos.

Floors are far below the quiet figures (23 fps alone here) so a busy 2-core machine passes; the figures
are printed (``pytest -s``). Below: the same machinery without a browser (queue, cancel, worker crash,
byte-bounded cache, pixel budget, message cleaning).
"""

from __future__ import annotations

import io
import os
import re
import statistics
import threading
import time
from pathlib import Path

import pytest

from .app_helpers import start_app, stop_app
from .conftest import SAMPLES, sample
from .test_app_browser import (  # noqa: F401 - fixtures shared with the browser tests
    _open,
    _shot,
    _start_live,
    _text,
    _wait_idle,
    browser,
    chromium,
    chromium_path,
    netns,
    pw,
)

LIMIT_MB = 5
FRAMES = re.compile(r"(\d+) frames analysed")


@pytest.fixture(scope="module")
def server(chromium_path, netns, tmp_path_factory):  # noqa: F811
    """A server of this module's own (a clean memory baseline), with 5 MB upload limits."""
    log = tmp_path_factory.mktemp("app-load") / "streamlit.log"
    proc, url = start_app(log, netns=netns, env={"AULIB_APP_MAX_IMAGE_MB": str(LIMIT_MB),
                                                 "AULIB_APP_MAX_VIDEO_MB": str(LIMIT_MB)})
    yield proc, url
    stop_app(proc)
    text = log.read_text(errors="replace")
    blocks = text.split("Traceback (most recent call last):")[1:]
    ours = [b for b in blocks if "/aulib/" in b or "/app/main.py" in b]
    assert not ours, ours[0][-4000:]


def _live_count(page) -> tuple[int | None, float | None]:
    """(frames analysed so far, fps shown) from the live panel, None where not shown."""
    text = page.locator(".st-key-live_stats").inner_text(timeout=5000)
    n, fps = FRAMES.search(text), re.search(r"(\d+(?:\.\d+)?) fps", text)
    return (int(n.group(1)) if n else None), (float(fps.group(1)) if fps else None)


def _count(page, timeout: float = 10) -> int:
    """The live panel's frame counter (it reads "Waiting for frames…" for a moment after a stall)."""
    deadline = time.monotonic() + timeout
    while True:
        n, _ = _live_count(page)
        if n is not None or time.monotonic() > deadline:
            return n or 0
        page.wait_for_timeout(200)


def _cpu_seconds(procs) -> float:
    import psutil

    total = 0.0
    for p in procs:
        try:
            total += sum(p.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def _rate(page, seconds: float, until=None) -> tuple[float, list[float]]:
    """Frames analysed per second on a live page over ``seconds`` (or until ``until()`` is true), from the
    panel's frame counter, and the fps values it showed meanwhile."""
    n0 = _count(page)
    t0 = time.monotonic()
    shown = []
    while time.monotonic() - t0 < seconds and not (until and until()):
        page.wait_for_timeout(500)
        _, fps = _live_count(page)
        shown.append(fps or 0.0)
    n1 = _count(page)
    dt = time.monotonic() - t0
    return (n1 - n0) / dt, shown


# ------------------------------------------------------------------------------------- concurrency
@pytest.mark.browser
@pytest.mark.slow
def test_live_keeps_flowing_while_another_user_analyses_a_video(server, browser):  # noqa: F811
    from playwright.sync_api import expect

    _, url = server
    live = _open(browser, f"{url}/")
    _start_live(live)
    live.wait_for_timeout(2000)  # past the first frames' warm-up
    before, _ = _rate(live, 5)

    other = _open(browser, f"{url}/video")
    main = other.locator('[data-testid="stMain"]')
    every = other.get_by_label("Analyse every n-th frame", exact=True)
    every.fill("2")  # 236 frames: long enough to measure, short enough for the suite
    every.press("Enter")
    _wait_idle(other)
    other.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        str(SAMPLES / "WolfgangLanger_Pexels.mp4"))
    expect(main).to_contain_text(re.compile(r"Analysing WolfgangLanger_Pexels\.mp4: frame \d+"), timeout=60_000)
    started = time.monotonic()
    done = re.compile(r"Analysed \d+ frames of WolfgangLanger_Pexels\.mp4")
    during, shown = _rate(live, 120, until=lambda: bool(done.search(_text(other))))
    video_s = time.monotonic() - started
    expect(main).to_contain_text(done, timeout=120_000)
    after, _ = _rate(live, 5)

    print(f"\nlive fps before {before:.1f}, during another user's video {during:.1f} "
          f"(shown {statistics.median(shown) if shown else 0:.1f}, min {min(shown, default=0):.1f}), "
          f"after {after:.1f}; the video took {video_s:.1f} s")
    # The old server froze live streams for the whole analysis ("Waiting for frames…", 0 fps).
    # Floors far below the quiet figures (≈20 fps before, ≈10 during): other users of a 2-core machine and
    # the test's own Chromium (encoding the camera, drawing the video page) share the cores too.
    assert during >= max(1.5, 0.1 * before) and min(shown, default=0) > 0, (before, during, shown)
    assert after >= max(1.5, 0.1 * before), (before, after)
    live.close()
    other.close()


@pytest.mark.browser
@pytest.mark.slow
def test_two_live_users_share_the_machine(server, browser):  # noqa: F811
    import psutil

    proc, url = server
    a = _open(browser, f"{url}/")
    _start_live(a)
    alone, _ = _rate(a, 4)
    b = _open(browser, f"{url}/")
    _start_live(b)
    b.wait_for_timeout(1500)
    server_cpu = psutil.Process(proc.pid)
    app_tree = {proc.pid} | {c.pid for c in server_cpu.children(recursive=True)}
    ours = [p for p in psutil.Process().children(recursive=True) if p.pid not in app_tree]  # Playwright, Chromium

    def window() -> dict[str, float]:
        t0 = time.monotonic()
        na0, nb0 = _count(a), _count(b)
        cpu0, s0, b0 = psutil.cpu_times(), sum(server_cpu.cpu_times()[:2]), _cpu_seconds(ours)
        b.wait_for_timeout(6000)
        na1, nb1 = _count(a), _count(b)
        dt = time.monotonic() - t0
        busy = sum(psutil.cpu_times()[:3]) - sum(cpu0[:3])
        print(f"\nCPU over the window: app server {(sum(server_cpu.cpu_times()[:2]) - s0) / dt:.2f} cores, "
              f"test browser {(_cpu_seconds(ours) - b0) / dt:.2f}, whole machine {busy / dt:.2f} of "
              f"{psutil.cpu_count()}")
        return {"a": (na1 - na0) / dt, "b": (nb1 - nb0) / dt}

    results = window()
    for name, page in (("a", a), ("b", b)):
        if results[name] <= 0:  # known streamlit-webrtc flake: a fresh connection closed by the page: restart it
            stop = page.frame_locator('iframe[title*="streamlit_webrtc"]').get_by_role("button", name="STOP")
            if stop.count():
                stop.click()
            _start_live(page)
            results = window()
            break
    panel = a.locator(".st-key-live_stats").inner_text()
    print(f"\none live user {alone:.1f} fps; two live users {results['a']:.1f} + {results['b']:.1f} fps")
    assert re.search(r"Server: 2 live stream\(s\)", panel), panel  # the load line counts both streams
    # The property: neither user starves. Absolute rates depend on what else shares the 2 cores (two
    # Chromium encoders here; earlier tests' workers winding down): measured 4.4 + 3.7 fps with one user
    # at 22.8 on a quiet run, 1.3 + 1.8 right after the upload tests.
    assert min(results.values()) >= 0.5, (alone, results)
    a.close()
    b.close()


# ---------------------------------------------------------------------------------------- refusals
def _tiny_png(size: tuple[int, int], colour=(0, 0, 0)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.browser
@pytest.mark.slow
def test_every_refused_upload_is_visible_and_names_the_file(server, browser):  # noqa: F811
    from playwright.sync_api import expect

    _, url = server
    page = _open(browser, f"{url}/image")
    main = page.locator('[data-testid="stMain"]')
    result = page.locator(".st-key-upload_result")
    expect(main).to_contain_text("sample_face.jpg: 1 face(s)", timeout=60_000)
    upload = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    jpeg = sample("single_face.jpg").read_bytes()

    def check(name: str, buffer: bytes, reason: str, shot: str) -> None:
        upload.set_input_files(files=[{"name": name, "mimeType": "application/octet-stream", "buffer": buffer}])
        pattern = re.compile(re.escape(name) + " was refused: " + reason)
        expect(main).to_contain_text(pattern, timeout=60_000)
        text = _text(page)
        assert "/tmp" not in text and "Errno" not in text and "Traceback" not in text, text[:2000]
        assert not result.is_visible()  # the sample result is not left on screen as if it were the user's
        _wait_idle(page)
        _shot(page, shot)
        assert page.locator(f'text=/{re.escape(name)} was refused/').first.is_visible()

    # size: refused by the browser before it is sent; the page says so in words, not a hover tooltip
    check("holiday [1].jpg", jpeg + os.urandom((LIMIT_MB << 20) + 1024), r"File must be 5\.0MB or smaller",
          "app_refused_size.png")
    page.locator('[data-testid="stFileChipDeleteBtn"] button').first.click()
    expect(result).to_be_visible(timeout=30_000)  # back to the (labelled) sample once the file is removed
    # type: not an image (content decides, whatever the name says), and a video on the image page
    check("report.pdf", b"%PDF-1.4\n" + b"0" * 2000, r"not an image file \(format not recognised\)",
          "app_refused_type.png")
    check("clip.mp4", sample("single_face.mp4").read_bytes(), "this is a video file: use the Video page",
          "app_refused_video_on_image_page.png")
    # pixels: 144 MP in a 0.4 MB PNG, refused from its header (the CLI's cap)
    check("huge.png", _tiny_png((12000, 12000)), r"image too large \(12000×12000 = 144 MP; aulib reads at most",
          "app_refused_pixels.png")
    # unreadable: a JPEG cut in half
    check("cut.jpg", jpeg[: len(jpeg) // 2], r"truncated or corrupt image data", "app_refused_unreadable.png")
    assert "sample_face.jpg" not in _text(page)
    # an accepted photo beside them still shows its result
    upload.set_input_files(str(SAMPLES / "single_face.jpg"))
    expect(main).to_contain_text("single_face.jpg: 1 face(s)", timeout=60_000)
    page.close()

    page = _open(browser, f"{url}/video")
    main = page.locator('[data-testid="stMain"]')
    upload = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    upload.set_input_files(str(SAMPLES / "single_face.mp4"))
    expect(main).to_contain_text(re.compile(r"Analysed \d+ frames of single_face\.mp4"), timeout=120_000)
    for name, buffer, reason in [
        ("notes.txt", b"hello", r"\.txt is not a video type this page takes"),
        ("photo.jpg", jpeg, "this is an image file: use the Image page"),
        ("broken.mp4", b"\x00" * 4096, r"not a readable video \(Invalid data found when processing input\)"),
        ("big.mp4", b"\x00" * ((LIMIT_MB << 20) + 1024), r"File must be 5\.0MB or smaller"),
    ]:
        upload.set_input_files(files=[{"name": name, "mimeType": "application/octet-stream", "buffer": buffer}])
        expect(main).to_contain_text(re.compile(re.escape(name) + " was refused: " + reason), timeout=60_000)
        text = _text(page)
        assert "Analysed" not in text and "/tmp" not in text and "Errno" not in text, text[:2000]
        if name == "broken.mp4":
            _wait_idle(page)
            _shot(page, "app_refused_video.png")
    # a good video uploaded while the too-big one's red chip is still listed: its progress and result show (the
    # page kept them hidden behind the refusal, and nothing happened for as long as the user waited)
    upload.set_input_files(str(SAMPLES / "no_face.mp4"))
    expect(main).to_contain_text(re.compile(r"No face found in any of the \d+ analysed frames"), timeout=120_000)
    assert page.locator(".st-key-upload_result").is_visible()
    page.close()
    assert not browser.blocked, browser.blocked


# ------------------------------------------------------------------------------------------ memory
def _rss_mb(pid: int) -> float:
    """Resident memory of the server process and its children (the video workers), in MB."""
    import psutil

    p = psutil.Process(pid)
    procs = [p, *p.children(recursive=True)]
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total / 1e6


def _server_rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 1e6


def _big_face_png(tmp: Path, k: int, side: int = 10_000) -> Path:
    """A 100 MP PNG (about 3 MB: a face on a flat background), different for each ``k`` (no cache hits)."""
    from PIL import Image

    face = Image.open(sample("single_face.jpg")).convert("RGB")
    big = Image.new("RGB", (side, side), (200, 200 - k, 200))
    big.paste(face.resize((face.width * 4, face.height * 4)), (2000 + 300 * k, 3000))
    path = tmp / f"big{k}.png"
    big.save(path, "PNG", compress_level=1)
    return path


@pytest.mark.browser
@pytest.mark.slow
def test_server_memory_returns_to_baseline_after_large_uploads(server, browser, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    proc, url = server
    page = _open(browser, f"{url}/image")
    main = page.locator('[data-testid="stMain"]')
    expect(main).to_contain_text("sample_face.jpg: 1 face(s)", timeout=60_000)
    upload = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    upload.set_input_files(str(SAMPLES / "single_face.jpg"))
    expect(main).to_contain_text("single_face.jpg: 1 face(s)", timeout=60_000)
    _wait_idle(page)
    base = _server_rss_mb(proc.pid)
    n = 3
    pngs = [_big_face_png(tmp_path, k) for k in range(n)]
    after = []
    for k, png in enumerate(pngs):
        upload.set_input_files(str(png))
        expect(main).to_contain_text(f"big{k}.png: 1 face(s) (10000×10000)", timeout=120_000)
        _wait_idle(page)
        after.append(_server_rss_mb(proc.pid))
    for _ in range(n):  # 144 MP: refused from the header, nothing decoded
        huge_png = {"name": "huge.png", "mimeType": "image/png", "buffer": _tiny_png((12000, 12000))}
        upload.set_input_files(files=[huge_png])
        expect(main).to_contain_text("huge.png was refused", timeout=60_000)
    huge = _server_rss_mb(proc.pid)
    page.close()

    page = _open(browser, f"{url}/video")
    main = page.locator('[data-testid="stMain"]')
    upload = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    videos = []
    for name in ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "single_face.mp4"):
        every = page.get_by_label("Analyse every n-th frame", exact=True)  # a new job even for the same file
        every.fill(str(len(videos) + 1))
        every.press("Enter")
        _wait_idle(page)
        upload.set_input_files(str(SAMPLES / name))
        expect(main).to_contain_text(re.compile(rf"Analysed \d+ frames of {re.escape(name)}"), timeout=180_000)
        _wait_idle(page)
        videos.append((_server_rss_mb(proc.pid), _rss_mb(proc.pid)))
    page.close()
    print(f"\nserver RSS baseline {base:.0f} MB; after each 100 MP PNG {[round(x) for x in after]} MB; "
          f"after {n} refused 144 MP PNGs {huge:.0f} MB; after each video: server "
          f"{[round(s) for s, _ in videos]} MB, server + video worker {[round(t) for _, t in videos]} MB")
    # Before: +0.5–1.6 GB per 144 MP upload, never given back. Now one decode's working set at most.
    assert max(after) - base < 500, (base, after)
    assert after[-1] - after[0] < 150, after  # no ratchet from upload to upload
    assert huge - after[-1] < 50, (after, huge)
    assert videos[-1][0] - base < 500 and videos[-1][0] - videos[0][0] < 100, (base, videos)


# ------------------------------------------------------------------------------ without a browser
def test_clean_message_hides_paths_and_ffmpeg_numbers():
    from aulib.app.engine import clean_message

    raw = ("/tmp/aulib-video-x1/upload.mp4: video truncated or corrupt after frame 78 (InvalidDataError: "
           "[Errno 1094995529] Invalid data found when processing input: 'avcodec_send_packet()')")
    assert clean_message(raw, "my clip.mp4", ("/tmp/aulib-video-x1/upload.mp4", "/tmp/aulib-video-x1")) == (
        "video truncated or corrupt after frame 78 (InvalidDataError: Invalid data found when processing input)")
    assert clean_message("cut.jpg: truncated or corrupt image data (x)", "cut.jpg") == \
        "truncated or corrupt image data (x)"


def test_byte_lru_is_bounded_in_bytes_not_entries():
    from aulib.app.engine import ByteLRU

    cache = ByteLRU(1000, len)
    for k in range(10):
        cache.put(k, b"x" * 300)
    assert cache.bytes <= 1000 and len(cache) == 3 and cache.get(9) is not None and cache.get(0) is None
    cache.get(7)  # recently used: kept
    cache.put("big", b"y" * 5000)  # larger than the whole budget: not kept, nothing evicted for it
    cache.put("new", b"z" * 300)
    assert cache.get("big") is None and cache.get(7) is not None and cache.get(8) is None
    assert cache.bytes == sum(len(cache.get(k)) for k in (7, 9, "new"))


def test_pixel_budget_serialises_large_decodes():
    from aulib.app.engine import PixelBudget

    budget, inside, peak, lock = PixelBudget(100), [0], [0], threading.Lock()
    waited = []

    def work(pixels: int) -> None:
        with budget.take(pixels, on_wait=lambda: waited.append(pixels)):
            with lock:
                inside[0] += min(pixels, budget.limit)
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= min(pixels, budget.limit)

    threads = [threading.Thread(target=work, args=(p,)) for p in (80, 80, 80, 10, 500)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] <= 100 and waited and budget.used == 0  # 500 > budget: runs alone, counted as 100


def test_video_jobs_queue_cancel_and_clean_errors():
    """The queue behind the video page: FIFO positions, results named after the upload, a broken file's
    reason without paths, cancelling a queued and a running job, and a worker that dies mid-job."""
    from aulib.app.engine import QueueFull, VideoJobs

    clip = sample("single_face.mp4")
    jobs = VideoJobs(workers=1, max_queued=3)
    try:
        a = jobs.submit(open(clip, "rb"), "my clip.mp4", 3)
        b = jobs.submit(io.BytesIO(b"\x00" * 4096), "broken.mp4", 1)
        c = jobs.submit(open(clip, "rb"), "c.mp4", 1)
        assert [jobs.position(j) for j in (b, c)] in ([1, 2], [2, 3])
        extra = []
        with pytest.raises(QueueFull):  # 3 waiting at most (the worker may already have taken a)
            for _ in range(4):
                extra.append(jobs.submit(io.BytesIO(b"x"), "e.mp4", 1))
        assert len(extra) <= 1
        for j in extra:
            jobs.cancel(j)
        jobs.cancel(c)
        assert c.state == "cancelled" and not c.folder.exists() and jobs.position(c) == 0
        deadline = time.monotonic() + 120
        while not (a.finished_state and b.finished_state) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert a.state == "done" and a.total == 24 and len(a.result) == 24, (a.state, a.error)
        assert set(a.result["input"]) == {"my clip.mp4"} and a.result["success"].sum() >= 23
        assert not a.folder.exists()  # the upload's temporary copy is gone
        errors = set(b.result["error"])
        assert errors == {"cannot open as video — truncated, corrupt or not a video "
                          "(Invalid data found when processing input)"}, errors

        long = jobs.submit(open(sample("WolfgangLanger_Pexels.mp4"), "rb"), "long.mp4", 1)
        while long.done == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        jobs.cancel(long)  # running: its worker process is stopped, the next job gets a fresh one
        time.sleep(0.5)
        assert long.state == "cancelled" and jobs.load()[0] == 0

        crash = jobs.submit(open(sample("WolfgangLanger_Pexels.mp4"), "rb"), "crash.mp4", 1)
        while crash.done == 0 and not crash.finished_state and time.monotonic() < deadline:
            time.sleep(0.05)
        assert crash.state == "running", crash.state
        jobs._workers[0].proc.kill()  # as the kernel's OOM killer would
        while not crash.finished_state and time.monotonic() < deadline:
            time.sleep(0.1)
        assert crash.state == "failed" and "stopped unexpectedly" in crash.error, crash.error
        after = jobs.submit(open(clip, "rb"), "after.mp4", 6)
        while not after.finished_state and time.monotonic() < deadline:
            time.sleep(0.1)
        assert after.state == "done" and len(after.result) == 12, (after.state, after.error)
    finally:
        jobs.close()


def test_upload_copies_do_not_outlive_their_server(tmp_path):
    """Stopping the server (Ctrl-C) mid-analysis left the running video's copy in the temporary folder (up to
    500 MB at each restart), and a killed server's copies stayed for good. At exit a server removes its own; a new
    one removes those of servers no longer running."""
    import subprocess
    import sys

    code = (
        "import io, os, sys\n"
        "from aulib.app.engine import VideoJobs\n"
        "jobs = VideoJobs(workers=1, max_queued=8)\n"
        "job = jobs.submit(open(sys.argv[1], 'rb'), 'long.mp4', 1)\n"
        "print(job.folder, flush=True)\n"
        "os._exit(0) if sys.argv[2] == 'killed' else None\n"  # no exit handlers: as SIGKILL
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    clip = str(sample("WolfgangLanger_Pexels.mp4"))
    for how in ("exits", "killed"):
        res = subprocess.run([sys.executable, "-c", code, clip, how], capture_output=True, text=True, timeout=120,
                             env=env)
        folder = Path(res.stdout.split()[0])
        assert folder.parent == tmp_path and folder.name.startswith("aulib-video-"), res.stderr[-800:]
        assert folder.exists() == (how == "killed"), how
    res = subprocess.run([sys.executable, "-c", "from aulib.app.engine import VideoJobs; VideoJobs()"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0 and not list(tmp_path.glob("aulib-video-*")), res.stderr[-800:]


def test_a_video_worker_does_not_run_the_apps_script(tmp_path):
    """Under ``streamlit run`` the app's script is ``__main__``, and every spawned video worker ran it first (as
    ``__mp_main__``): ≈ 1 s and 150 MB per worker start, and Streamlit's warnings in the server log."""
    import subprocess
    import sys

    script = tmp_path / "page.py"
    marker = tmp_path / "ran"
    script.write_text(f"open({str(marker)!r}, 'a').write('x')\n")
    code = (
        "import sys, time, types\n"
        "page = types.ModuleType('__main__'); page.__file__ = sys.argv[1]; sys.modules['__main__'] = page\n"
        "from aulib.app.engine import VideoJobs\n"
        "jobs = VideoJobs(workers=1, max_queued=2)\n"
        "job = jobs.submit(open(sys.argv[2], 'rb'), 'clip.mp4', 8)\n"
        "deadline = time.monotonic() + 120\n"
        "while not job.finished_state and time.monotonic() < deadline:\n"
        "    time.sleep(0.1)\n"
        "print(job.state, flush=True)\n"
        "jobs.close()\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(script), str(sample("single_face.mp4"))],
                         capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert res.stdout.split()[:1] == ["done"], res.stderr[-1500:]
    assert not marker.exists()  # the page script never ran in the worker
