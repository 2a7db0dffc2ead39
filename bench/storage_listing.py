"""Benchmark the R2 backend's bucket listing against a bare boto3 paginator, and its peak memory.

A child process runs moto's S3-compatible server on 127.0.0.1. It fills two
buckets (--objects, default 200,000, and a tenth of that) through moto's
in-process backend API, at about 18,000 objects/s on a 2-core machine.
put_object over HTTP ran at about 100 objects/s there. All listing then goes
over HTTP from this process:

- Throughput: CloudflareR2Storage.get_storage_usage() and a bare boto3
  ListObjectsV2 paginator loop over the large bucket, alternating, with the
  order flipped every round. Both use a client from build_s3_client.
  Reported in objects per second, and the ratio backend/bare per round.
  Then one listing by the same loop on a boto3 client with botocore's
  defaults, which parse every LastModified timestamp.
- Memory: the tracemalloc peak during get_storage_usage() on the small and
  the large bucket, with the client built before tracing starts. As a check
  that the measurement can see growth, the same is measured on the small
  bucket for a loop that keeps every key in a list.

moto 5.2.6 is slow at listing in two ways, so unless --stock-listing is given
the server process changes both for the filled buckets:

- It sorts every key of the bucket for each ListObjectsV2 page: 0.67 s per
  page at 20,000 objects, so an estimated 20 minutes or more for one listing
  of 200,000. Here a bisect over a key list sorted once after the fill picks
  the page's keys instead.
- Its XML serializer takes about 0.3 s per page of 1,000 keys, several times
  the client's parsing. Here each response, built by moto's own code on first
  request, is kept and sent again for the same request. An untimed listing of
  each bucket fills that cache, so every timed listing measures the client
  and the loopback HTTP exchange, which is where the backend and the bare
  loop could differ.

    .venv/bin/python bench/storage_listing.py --objects 200000
"""

import argparse
import bisect
import gc
import json
import logging
import multiprocessing
import os
import statistics
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import harness  # noqa: E402

log = logging.getLogger("bench")
BUCKET_REGION = "us-east-1"
# Seconds to wait for the server process to fill its buckets and start.
SERVER_START_TIMEOUT_SECONDS = 600
SERVER_STOP_TIMEOUT_SECONDS = 30


def parse_args():
    parser = argparse.ArgumentParser(description="Time and measure the memory of listing a large bucket on a local moto server.")
    parser.add_argument("--objects", type=int, default=200_000,
                        help="objects in the large bucket; the small bucket contains a tenth as many (default: 200000)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of one backend listing and one bare paginator listing each (default: 5)")
    parser.add_argument("--page-size", type=int, default=1000,
                        help="MaxKeys per ListObjectsV2 request, for both variants (default: 1000)")
    parser.add_argument("--stock-listing", action="store_true",
                        help="use moto's listing as shipped, which sorts the whole bucket per page; "
                             "practical only for --objects of about 20000 or less")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args()
    if args.objects < 10:
        parser.error(f"--objects must be at least 10, got {args.objects}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if not 1 <= args.page_size <= 1000:
        parser.error(f"--page-size must be 1 to 1000, got {args.page_size}")
    return args


def object_size(number):
    return number % 100


def expected_bytes(count):
    return sum(object_size(number) for number in range(count))


# --- The server process -----------------------------------------------------

def serve(buckets, stock_listing, connection):
    """Run moto on 127.0.0.1 in this process: fill `buckets` ({name: object count}), report, wait for "stop"."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    moto_s3 = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    started = time.perf_counter()
    for name, count in buckets.items():
        moto_s3.create_bucket(name, BUCKET_REGION)
        for number in range(count):
            moto_s3.put_object(name, f"backups/{number:09d}.tar", b"x" * object_size(number))
    fill_seconds = time.perf_counter() - started
    if not stock_listing:
        install_indexed_listing(moto_s3, list(buckets))
        install_response_cache(list(buckets))

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    connection.send({"url": f"http://{host}:{port}", "fill_seconds": fill_seconds})
    connection.recv()
    server.stop()


def install_indexed_listing(moto_s3, bucket_names):
    """Replace moto's ListObjectsV2 key selection for `bucket_names` with a bisect over keys sorted once.

    The buckets must not change afterwards. Requests with a prefix or a
    delimiter, and other buckets, go to moto's own method.
    """
    from moto.utilities.utils import md5_hash

    backend_class = type(moto_s3)
    stock_method = backend_class.list_objects_v2
    sorted_names = {name: sorted(moto_s3.get_bucket(name).keys.keys()) for name in bucket_names}

    def list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys):
        names = sorted_names.get(bucket.name)
        if names is None or prefix or delimiter or max_keys < 1:
            return stock_method(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys)
        after = self._pagination_tokens.get(continuation_token) if continuation_token else start_after
        start = bisect.bisect_right(names, after) if after else 0
        page_names = names[start:start + max_keys]
        is_truncated = start + max_keys < len(names)
        next_token = None
        if is_truncated:
            # The same token scheme as moto's own _truncate_result.
            next_token = md5_hash(page_names[-1].encode("utf-8")).hexdigest()
            self._pagination_tokens[next_token] = page_names[-1]
        return [bucket.keys[name] for name in page_names], is_truncated, next_token

    backend_class.list_objects_v2 = list_objects_v2


def install_response_cache(bucket_names):
    """Keep moto's ListObjectsV2 response for each distinct request on `bucket_names` and send it again."""
    from moto.s3.responses import S3Response

    stock_method = S3Response.list_objects_v2
    responses = {}

    def list_objects_v2(self):
        if self.bucket_name not in bucket_names:
            return stock_method(self)
        request_key = (self.bucket_name, tuple(sorted((name, tuple(values)) for name, values in self.querystring.items())))
        if request_key not in responses:
            responses[request_key] = stock_method(self)
        status, headers, body = responses[request_key]
        return status, dict(headers), body

    S3Response.list_objects_v2 = list_objects_v2


class ServerProcess:
    """The moto server in a child process, so its allocations stay out of this process's tracemalloc."""

    def __init__(self, buckets, stock_listing):
        context = multiprocessing.get_context("spawn")
        self.connection, child_connection = context.Pipe()
        self.process = context.Process(target=serve, args=(buckets, stock_listing, child_connection), daemon=True)
        self.process.start()
        log.info("Filling %s in the moto server process (pid %s)", buckets, self.process.pid)
        if not self.connection.poll(SERVER_START_TIMEOUT_SECONDS):
            self.stop()
            raise RuntimeError(f"the moto server process did not start within {SERVER_START_TIMEOUT_SECONDS} s")
        ready = self.connection.recv()
        self.url = ready["url"]
        self.fill_seconds = ready["fill_seconds"]
        log.info("moto listens at %s; the fill took %.1f s", self.url, self.fill_seconds)

    def stop(self):
        if self.process.is_alive():
            try:
                self.connection.send("stop")
            except OSError:
                pass
            self.process.join(SERVER_STOP_TIMEOUT_SECONDS)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(SERVER_STOP_TIMEOUT_SECONDS)
        log.info("Stopped the moto server process (pid %s)", self.process.pid)


# --- The listings -----------------------------------------------------------
# Each prepare_* function builds its client first and returns the listing as
# a function, so that tracemalloc measures the listing and not the loading of
# botocore's S3 service model.

def prepare_backend(url, bucket, page_size):
    from app.storage.r2 import CloudflareR2Storage

    backend = CloudflareR2Storage("bench", bucket, account_id="bench", access_key_id="bench",
                                  secret_access_key="bench", quota_bytes=None, endpoint_url=url, page_size=page_size)

    def listing():
        usage = backend.get_storage_usage()
        return usage.object_count, usage.used_bytes

    return listing


def prepare_bare(url, bucket, page_size):
    """Build a plain paginator loop on a client with the same settings as the backend's."""
    from app.storage.r2 import build_s3_client

    return paginator_listing(build_s3_client(url, "bench", "bench"), bucket, page_size)


def prepare_default_client(url, bucket, page_size):
    """Build the same loop on a boto3 client with botocore's defaults, which parse every LastModified."""
    import boto3
    from botocore.config import Config as BotocoreConfig

    client = boto3.session.Session().client(
        "s3", endpoint_url=url, region_name="auto", aws_access_key_id="bench", aws_secret_access_key="bench",
        config=BotocoreConfig(s3={"addressing_style": "path"}),
    )
    return paginator_listing(client, bucket, page_size)


def prepare_key_keeping(url, bucket, page_size):
    """Build a paginator loop that keeps every key, the memory check's control, whose memory grows with the bucket."""
    from app.storage.r2 import build_s3_client

    return paginator_listing(build_s3_client(url, "bench", "bench"), bucket, page_size, keep_keys=True)


def paginator_listing(client, bucket, page_size, keep_keys=False):
    def listing():
        keys = []
        count = 0
        total_bytes = 0
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": page_size})
        for page in pages:
            for item in page.get("Contents", ()):
                count += 1
                total_bytes += item["Size"]
                if keep_keys:
                    keys.append(item["Key"])
        return count, total_bytes

    return listing


VARIANTS = {"backend": prepare_backend, "bare": prepare_bare}


def timed(listing, bucket, count):
    """Run `listing` once; return its seconds after checking that it returned every object.

    A full garbage collection first keeps the collector's work left over
    from the previous listing out of this one's time.
    """
    gc.collect()
    started = time.perf_counter()
    listed, total_bytes = listing()
    seconds = time.perf_counter() - started
    if listed != count or total_bytes != expected_bytes(count):
        raise RuntimeError(f"listing {bucket} returned {listed} objects and {total_bytes} bytes, "
                           f"expected {count} and {expected_bytes(count)}")
    return seconds


def warm_up(args, url, buckets):
    """List each bucket once, untimed, so that later listings all meet the same server state."""
    for bucket, count in buckets.items():
        seconds = timed(prepare_bare(url, bucket, args.page_size), bucket, count)
        log.info("Warm-up listing of %s: %.1f s", bucket, seconds)


def measure_throughput(args, url, bucket):
    rounds = []
    for number in range(args.rounds):
        order = ["backend", "bare"] if number % 2 == 0 else ["bare", "backend"]
        seconds = {}
        for variant in order:
            listing = VARIANTS[variant](url, bucket, args.page_size)
            seconds[variant] = timed(listing, bucket, args.objects)
            log.info("Round %d, %s: %.2f s (%.0f objects/s)", number + 1, variant, seconds[variant],
                     args.objects / seconds[variant])
        rounds.append({
            "order": order,
            "backend_objects_per_second": args.objects / seconds["backend"],
            "bare_objects_per_second": args.objects / seconds["bare"],
            "ratio": seconds["bare"] / seconds["backend"],
        })
    return rounds


def measure_default_client(args, url, bucket):
    """Time one listing with botocore's default timestamp parsing; return objects per second."""
    seconds = timed(prepare_default_client(url, bucket, args.page_size), bucket, args.objects)
    log.info("Bare paginator on a default boto3 client: %.2f s (%.0f objects/s)", seconds, args.objects / seconds)
    return args.objects / seconds


def peak_memory(listing, bucket, count):
    """Return (tracemalloc peak in bytes, seconds) of one listing, counting only what it allocates."""
    tracemalloc.start()
    try:
        seconds = timed(listing, bucket, count)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, seconds


def measure_memory(args, url, buckets, control_bucket):
    rows = []
    runs = [("backend", prepare_backend, bucket, count) for bucket, count in buckets.items()]
    runs.append(("keys kept (control)", prepare_key_keeping, control_bucket, buckets[control_bucket]))
    for name, prepare, bucket, count in runs:
        peak, seconds = peak_memory(prepare(url, bucket, args.page_size), bucket, count)
        log.info("Memory, %s, %d objects: peak %.0f KiB", name, count, peak / 1024)
        rows.append({"listing": name, "objects": count, "peak_bytes": peak, "seconds_traced": seconds})
    return rows


# --- Report -----------------------------------------------------------------

def library_versions():
    from importlib.metadata import version

    return {name: version(name) for name in ("boto3", "botocore", "moto", "Werkzeug")}


def print_report(args, fill_seconds, rounds, default_client_rate, memory_rows):
    print()
    print("Machine:")
    for line in harness.machine_description():
        print("  " + line)
    for name, value in library_versions().items():
        print(f"  {name}: {value}")
    print()
    listing = "moto's own listing" if args.stock_listing else "moto with indexed key selection and cached ListObjectsV2 responses"
    print(f"Method: {args.objects:,} objects, pages of {args.page_size}, {args.rounds} rounds, {listing}; "
          f"fill through moto's backend API took {fill_seconds:.1f} s.")
    print()
    print("| round | order | backend objects/s | bare paginator objects/s | backend/bare |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for number, row in enumerate(rounds, 1):
        print(f"| {number} | {', '.join(row['order'])} | {row['backend_objects_per_second']:,.0f} | "
              f"{row['bare_objects_per_second']:,.0f} | {row['ratio']:.3f} |")
    ratios = [row["ratio"] for row in rounds]
    print(f"Median backend/bare: {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    median_backend = statistics.median(row["backend_objects_per_second"] for row in rounds)
    print(f"Bare paginator on a default boto3 client (timestamps parsed), one listing: {default_client_rate:,.0f} objects/s, "
          f"{median_backend / default_client_rate:.2f}x slower than the backend's median")
    print()
    print("| listing | objects | tracemalloc peak | seconds (traced) |")
    print("| --- | ---: | ---: | ---: |")
    for row in memory_rows:
        print(f"| {row['listing']} | {row['objects']:,} | {row['peak_bytes'] / 1024:,.0f} KiB | {row['seconds_traced']:.1f} |")


def main():
    harness.configure_logging()
    args = parse_args()
    small = max(1, args.objects // 10)
    buckets = {f"bench-{small}": small, f"bench-{args.objects}": args.objects}
    large_bucket = f"bench-{args.objects}"

    server = ServerProcess(buckets, args.stock_listing)
    try:
        warm_up(args, server.url, buckets)
        rounds = measure_throughput(args, server.url, large_bucket)
        default_client_rate = measure_default_client(args, server.url, large_bucket)
        memory_rows = measure_memory(args, server.url, buckets, control_bucket=f"bench-{small}")
    finally:
        server.stop()

    print_report(args, server.fill_seconds, rounds, default_client_rate, memory_rows)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rounds": rounds, "default_client_objects_per_second": default_client_rate,
                       "memory": memory_rows, "fill_seconds": server.fill_seconds,
                       "versions": library_versions(), "arguments": vars(args)}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
