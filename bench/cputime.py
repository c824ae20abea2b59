"""Runs a command and reports the CPU time a server process spent during it, per group of its
threads (thread names with their trailing numbers dropped: `argon2`, `tokio-rt-worker`,
`sqlx-sqlite-worker`, ...), divided by the count the command printed as `signins=N`. Prints the
command's output, then one line per group and the total, in ms per unit.

Usage: python3 cputime.py PID COMMAND [ARG...]"""
import os
import re
import subprocess
import sys


def snapshot(pid):
    """Thread id -> (name, user + system clock ticks)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except FileNotFoundError:
            continue  # ended meanwhile
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[tid] = (name, int(fields[11]) + int(fields[12]))
    return out


def main():
    pid, cmd = int(sys.argv[1]), sys.argv[2:]
    before = snapshot(pid)
    output = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = snapshot(pid)
    count = int(re.search(r"signins=(\d+)", output).group(1))
    groups = {}
    for tid, (name, ticks) in after.items():
        group = re.sub(r"[-_]?\d+$", "", name)
        groups[group] = groups.get(group, 0) + ticks - before.get(tid, (name, 0))[1]
    ms = 1000 / os.sysconf("SC_CLK_TCK") / max(count, 1)
    print(output.strip())
    for group, ticks in sorted(groups.items(), key=lambda g: -g[1]):
        if ticks:
            print(f"CPU {group} {ticks * ms:.3f} ms per sign-in")
    print(f"CPU total {sum(groups.values()) * ms:.3f} ms per sign-in")


main()
