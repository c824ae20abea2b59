#!/usr/bin/env python3
"""Start-up time to ready and idle RSS of `ims up`, first start and restart, pinned to one core.

Run after `cargo build --release -p ims-cli`: `python3 bench/startup.py`.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "ims")


def wait_up_json(data, pid):
    while True:
        try:
            up = json.load(open(os.path.join(data, "up.json")))
            if up["pid"] == pid:
                return up
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.002)


def wait_ready(url):
    while True:
        try:
            urllib.request.urlopen(url + "/health/ready", timeout=1)
            return
        except OSError:
            time.sleep(0.002)


def main():
    data = tempfile.mkdtemp()
    try:
        for label in ["first start (org, administrator, CA, RSA key)", "restart"]:
            started = time.monotonic()
            proc = subprocess.Popen(
                ["taskset", "-c", "0", BIN, "up", "--data-dir", data, "--port", "0", "--plain-http"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            up = wait_up_json(data, proc.pid)
            wait_ready(up["ims_url"])
            elapsed = time.monotonic() - started
            time.sleep(1)
            with open(f"/proc/{proc.pid}/status") as status:
                rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
            print(f"{label}: ready in {elapsed * 1000:.0f} ms, idle RSS {rss // 1024} MB")
            proc.terminate()
            proc.wait()
    finally:
        shutil.rmtree(data)


if __name__ == "__main__":
    main()
