#!/usr/bin/env python3
"""Scale-out figures for BENCHMARKS.md: the API at 1, 2 and 3 instances, the ledger consumer at 1 and 2.

By hand, on a quiet machine (about 25 minutes with the defaults); not part of the test command.

  ./scripts/scale-bench.py [--payctl target/release/payctl] [--step 30s] [--rates 1000,1250,1500]

1. API: for N in 1, 2, 3, `payctl up --scale ingest=N --partitions 6`, then `payctl bench` (authorize and
   full-flow step searches, no baseline, no broker-alone run, no k6 cross-check); the highest sustained
   rates and the CPU per flow of each step are taken from its JSON report.
2. Consumers: for C in 1, 2, `up --scale ingest=1,consumer=C`, stop the consumers, make a backlog with
   `payctl load` (its events wait in Kafka), start them again and time how long they take to read it
   (`consumer_events_consumed_total` of every consumer), which gives events/s and each one's share.
The settlement worker and the acquirer are stopped for the whole run, as they were not there when the
one-instance figures were taken. Everything it prints goes to stdout as it comes; --json writes the
figures as one object at the end.
"""
import argparse
import json
import subprocess
import sys
import time
import urllib.request


def sh(payctl, *args, capture=False):
    cmd = [payctl, *args]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    if capture:
        # bench exits 1 when a step missed its limits: the report is what is wanted all the same.
        return subprocess.run(cmd, stdout=subprocess.PIPE, text=True).stdout
    # Their progress is for people: on stderr, so that stdout holds only the figures.
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    return None


def metric_sum(port, name):
    """The sum of a metric's samples on a service's /metrics (0 when it does not answer)."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def status(payctl):
    """`payctl status --json` (exit 3 only says something is not healthy: the stopped settlement worker)."""
    out = subprocess.run([payctl, "status", "--json"], stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out or "{}")


def summary(n, report):
    """One line per step: rate, achieved, p99, errors, CPU per flow and the machine's share of it."""
    lines = []
    for flow in ("authorize", "full"):
        search = report[flow]
        for st in search["steps"]:
            p99 = max((l.get("p99Ms", 0) for l in st.get("latency", [])), default=0)
            cpu = sum(c["ms"] for c in st.get("cpuPerFlow", []))
            lines.append(f"ingest={n} {flow:9} {st['rate']:>5}/s achieved {st['achieved']:8.1f} "
                         f"p99 {p99:6.1f} ms errors {st['errorPct']:.2f} % dropped {st['dropped']:.0f} "
                         f"cpu/flow {cpu:.2f} ms {'PASS' if st['passed'] else 'miss'}")
        lines.append(f"ingest={n} {flow:9} sustained: {search['sustained']}")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--payctl", default="target/release/payctl")
    p.add_argument("--step", default="30s")
    p.add_argument("--rates", default="750,1000,1250,1500,1750")
    p.add_argument("--full-rates", default="300,400,500")
    p.add_argument("--ingest", default="1,2,3")
    p.add_argument("--consumers", default="1,2")
    p.add_argument("--backlog-rate", type=int, default=300)
    p.add_argument("--backlog-seconds", type=int, default=100)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    out = {"api": [], "consumers": []}

    for n in [int(x) for x in a.ingest.split(",") if x.strip()]:
        sh(a.payctl, "up", "--runtime", "native", "--scale", f"ingest={n},consumer=1", "--partitions", "6")
        for svc in ("settlement", "acquirer"):
            sh(a.payctl, "stop", svc)
        report = json.loads(
            sh(a.payctl, "bench", "--json", "--baseline-seconds", "1", "--broker-messages", "0",
               "--step", a.step, "--rates", a.rates, "--full-rates", a.full_rates, "--no-cross-check",
               capture=True)
        )
        row = {"ingest": n, "report": report}
        out["api"].append(row)
        try:
            print(summary(n, report), flush=True)
        except (KeyError, TypeError) as e:
            print(f"(no summary: {e!r}; the whole report is in --json)", flush=True)

    for c in [int(x) for x in a.consumers.split(",") if x.strip()]:
        sh(a.payctl, "up", "--runtime", "native", "--scale", f"ingest=1,consumer={c}", "--partitions", "6")
        for svc in ("settlement", "acquirer"):
            sh(a.payctl, "stop", svc)
        names = ["consumer"] + [f"consumer-{i}" for i in range(2, c + 1)]
        ports = {s["service"]: int(s["address"].rsplit(":", 1)[1]) for s in status(a.payctl)["services"]}
        for name in names:
            sh(a.payctl, "stop", name)
        # The backlog: its events are published to Kafka and wait there for the consumers.
        # Only the backlog matters here, not k6's latency (k6 costs the platform CPU): a loose threshold.
        sh(a.payctl, "load", "--rate", str(a.backlog_rate), "--duration", f"{a.backlog_seconds}s", "--flow", "full",
           "--no-reconcile", "--catch-up-seconds", "0", "--p99-ms", "10000")
        time.sleep(3)  # the relay's last batch
        started = time.monotonic()
        for name in names:
            sh(a.payctl, "start", name)
        ready = time.monotonic() - started
        # Read from the start of the backlog: each consumer counts from its own start.
        last, still, first = None, time.monotonic(), None
        while True:
            consumed = {n: metric_sum(ports[n], "consumer_events_consumed_total") for n in names}
            lag = sum(metric_sum(ports[n], "consumer_lag") for n in names)
            total = sum(consumed.values())
            # Read is counted before a batch is applied: the end is when the legs stop growing too.
            legs = sum(metric_sum(ports[n], "ledger_legs_written_total") for n in names)
            if (total, legs) != last:
                last, still = (total, legs), time.monotonic()
                if first is None and total > 0:
                    first = time.monotonic()
            if lag == 0 and total > 0 and time.monotonic() - still > 2:
                break
            if time.monotonic() - started > 600:
                print("consumers did not catch up within 600 s", file=sys.stderr)
                break
            time.sleep(0.25)
        took = still - started
        # From the first event read to the last: the rate of reading, without the start.
        reading = still - (first or started)
        row = {"consumers": c, "events": total, "legs": legs, "seconds": round(took, 2), "readySeconds": round(ready, 2),
               "readingSeconds": round(reading, 2),
               "eventsPerSecond": round(total / reading, 1) if reading > 0 else None, "perConsumer": consumed}
        out["consumers"].append(row)
        print(json.dumps(row), flush=True)

    if a.json:
        json.dump(out, sys.stdout, default=str)
        print()


if __name__ == "__main__":
    main()
