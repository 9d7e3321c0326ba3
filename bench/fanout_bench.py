"""What fanning out on Ray costs (convngc/experiments/fanout.py): starting a local Ray, each job's scheduling,
and stopping it, measured with trivial jobs (they return their argument), beside the load average.

    python bench/fanout_bench.py                # 50 trivial jobs on 2 local workers
    python bench/fanout_bench.py --jobs 200 --workers 4
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convngc.experiments import fanout  # noqa: E402


def trivial(x, log=None):
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not fanout.have_ray():
        sys.exit("Ray is not installed: pip install -e .[cluster]")
    load = os.getloadavg()[0]
    marks = {"start": time.perf_counter()}
    done = 0
    gen = fanout.fan_out(trivial, [(k, (k,)) for k in range(args.jobs)], args.workers,
                         log=lambda line: marks.setdefault("up", time.perf_counter()))
    for _, result, error in gen:
        assert error is None
        done += 1
        if done == 1:
            marks["first"] = time.perf_counter()
        if done == args.jobs:
            marks["last"] = time.perf_counter()
    marks["stopped"] = time.perf_counter()
    print("load average %.2f -> %.2f (%d cores); %d trivial jobs on %d local workers:"
          % (load, os.getloadavg()[0], os.cpu_count(), args.jobs, args.workers))
    print("  Ray start          %6.2f s" % (marks["up"] - marks["start"]))
    print("  first job back     %6.2f s after the start (worker processes importing)" % (marks["first"] - marks["up"]))
    print("  per job after it   %6.1f ms (%d jobs in %.2f s)" % (1e3 * (marks["last"] - marks["first"]) / (args.jobs - 1),
                                                             args.jobs - 1, marks["last"] - marks["first"]))
    print("  Ray stop           %6.2f s" % (marks["stopped"] - marks["last"]))
    print("  in all             %6.2f s, %.0f ms per job" % (marks["stopped"] - marks["start"],
                                                            1e3 * (marks["stopped"] - marks["start"]) / args.jobs))


if __name__ == "__main__":
    main()
