"""A bounded HTTP POST load generator: threads with keep-alive http.client.

Used by bench/hook_intake.py when wrk is not installed. It sends at most
--requests requests and stops after --max-seconds, whichever comes first,
then prints one line: BENCH_RESULT followed by a JSON summary. CPython
threads share one interpreter lock, so this generator uses more CPU per
request than wrk and saturates sooner. Ratios between two servers measured
with it stay comparable, but the absolute rates are lower.
"""

import argparse
import http.client
import itertools
import json
import threading
import time
from urllib.parse import urlsplit


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="target URL on 127.0.0.1")
    parser.add_argument("--body", required=True, help="request body (JSON text)")
    parser.add_argument("--requests", type=int, required=True, help="maximum number of requests")
    parser.add_argument("--concurrency", type=int, required=True, help="number of threads, one connection each")
    parser.add_argument("--max-seconds", type=float, required=True, help="stop sending after this many seconds")
    return parser.parse_args()


def main():
    args = parse_args()
    target = urlsplit(args.url)
    if target.hostname != "127.0.0.1":
        raise SystemExit(f"invalid --url {args.url}: only 127.0.0.1 is allowed")
    body = args.body.encode("utf-8")
    headers = {"Content-Type": "application/json"}
    tickets = itertools.count()  # next() on a count is atomic in CPython
    lock = threading.Lock()
    totals = {"requests": 0, "status_errors": 0, "socket_errors": 0}
    latencies = []
    start = time.perf_counter()
    deadline = start + args.max_seconds

    def worker():
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        done = status_errors = socket_errors = 0
        local_latencies = []
        while next(tickets) < args.requests and time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                conn.request("POST", target.path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                socket_errors += 1
                conn.close()
                continue
            local_latencies.append(time.perf_counter() - sent)
            done += 1
            if not 200 <= response.status < 400:
                status_errors += 1
        conn.close()
        with lock:
            totals["requests"] += done
            totals["status_errors"] += status_errors
            totals["socket_errors"] += socket_errors
            latencies.extend(local_latencies)

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start

    latencies.sort()

    def latency_us(fraction):
        return int(latencies[int((len(latencies) - 1) * fraction)] * 1e6) if latencies else 0

    result = {**totals, "duration_us": int(elapsed * 1e6),
              "latency_p50_us": latency_us(0.50), "latency_p99_us": latency_us(0.99)}
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
