"""Launcher that measures one command's peak RSS honestly: `python -S -I peakrss.py OUT CMD...`.

Why a launcher: Linux carries the old memory image's high-water mark into `ru_maxrss` at exec
(exec_mmap -> setmax_mm_hiwater_rss). A command forked from the benchmark process itself would
therefore report at least the benchmark's own RSS (tens of MiB) whatever it used. This script
is started in an isolated, site-less interpreter (a few MiB), forks, execs CMD, and writes
CMD's own `ru_maxrss` (KiB), exit code and wall time as JSON to OUT. The floor of the method is
this launcher's own RSS at fork; the benchmark measures it (`/bin/true`) and reports it.

Standard library only, and no package imports: it runs by path under `-I`.
"""

import os
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: peakrss.py OUT CMD [ARGS...]", file=sys.stderr)
        return 2
    out, command = argv[1], argv[2:]
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(command[0], command)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    import json  # only now: what the launcher holds at fork is the method's floor

    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"maxrss_kib": usage.ru_maxrss, "returncode": code, "seconds": seconds}, handle)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
