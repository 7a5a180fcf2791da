"""Scale-out measurement: S3 inputs (a local moto server on 127.0.0.1) analysed on a local Dask
cluster into partitioned Parquet on the same server, compared with a serial local run; a worker
killed mid-task; throughput with 1 and 2 workers.

    python scripts/bench_scale.py [--copies 4] [--every 2]

Prints the ``aulib analyze`` command it runs (with its summary line) and one JSON line per figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=4, help="copies of the sample video (plus 4 photos)")
    ap.add_argument("--every", type=int, default=2)
    args = ap.parse_args()

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    import fsspec
    import pandas as pd
    from distributed import Client, LocalCluster

    from aulib.batch import AnalyzerSpec, _worker_analyzer, read_partitioned, run_batch
    from aulib.io import expand_inputs

    tmp = Path(tempfile.mkdtemp(prefix="aulib-scale-"))
    local = tmp / "in"
    local.mkdir()
    for k in range(args.copies):
        shutil.copy(SAMPLES / "single_face.mp4", local / f"clip{k}.mp4")
    for k in range(2):
        shutil.copy(SAMPLES / "single_face.jpg", local / f"single{k}.jpg")
        shutil.copy(SAMPLES / "multi_face.jpg", local / f"multi{k}.jpg")
    fs = fsspec.filesystem("s3")
    fs.mkdir("bench")
    fs.put(str(local) + "/", "bench/in/", recursive=True)
    spec = AnalyzerSpec(emotion_model="cnn")
    video = {"every": args.every}
    files = expand_inputs([local])
    urls = expand_inputs(["s3://bench/in/"])

    def show(**kw: object) -> None:
        print(json.dumps(kw), flush=True)

    t = time.perf_counter()
    serial = run_batch(files, spec, video_options=video)
    show(what="serial local run", inputs=len(files), rows=len(serial.table), frames=serial.frames,
         seconds=round(time.perf_counter() - t, 2))

    def same(out: str) -> bool:
        got = read_partitioned(out)
        for c in ("input", "error"):
            got[c] = got[c].str.replace("s3://bench/in", str(local), regex=False)
        pd.testing.assert_frame_equal(got, serial.table, check_exact=True, check_dtype=False)  # emotion: str vs object
        return True

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        cmd = ["aulib", "analyze", "s3://bench/in/", "-o", "s3://bench/out/", "--scheduler", c.scheduler_address,
               "--every", str(args.every)]
        print("$ " + " ".join(cmd), flush=True)
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        print("\n".join(line for line in p.stderr.splitlines() if line.startswith(("wrote", "summary", "error"))))
        show(what="moto + dask (2 workers, CLI, cold workers)", rc=p.returncode, seconds=round(wall, 2),
             equal_to_serial=same("s3://bench/out/"))

        # killed worker: SIGKILL the worker running a task, mid-run
        killed: list[int] = []
        result: dict = {}
        with Client(c.scheduler_address) as spy:
            pids = spy.run(os.getpid)
            th = threading.Thread(target=lambda: result.update(res=run_batch(
                urls, spec, out="s3://bench/killed/", video_options=video, scheduler=c.scheduler_address)))
            t = time.perf_counter()
            th.start()
            while not killed and th.is_alive():
                running = spy.run(lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing])
                for addr, keys in running.items():
                    if any("aulib-part" in k for k in keys) and addr in pids:
                        time.sleep(0.3)
                        os.kill(pids[addr], signal.SIGKILL)
                        killed.append(pids[addr])
                        break
                time.sleep(0.05)
            th.join()
        res = result["res"]
        show(what="killed worker run", killed_pid=killed, seconds=round(time.perf_counter() - t, 2),
             rows=res.rows, failed=len(res.failed), equal_to_serial=same("s3://bench/killed/"),
             summary=res.summary())

    for n in (1, 2):
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as c:
            with Client(c.scheduler_address) as cl:
                cl.run(lambda: _worker_analyzer(spec) is not None)  # load the models on every worker first
            t = time.perf_counter()
            res = run_batch(urls, spec, out=f"s3://bench/w{n}/", video_options=video, scheduler=c.scheduler_address,
                            keep_table=False)
            wall = time.perf_counter() - t
            show(what=f"{n} worker(s), warm", seconds=round(wall, 2), frames=res.frames,
                 fps=round(res.frames / wall, 2), summary=res.summary())
    server.stop()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
