#!/usr/bin/env python3
"""What the cluster and the load generators see right now, as one JSON line.

Used by loadtest/cluster.sh and loadtest/chaos.sh to wait on observable
state (never on a fixed sleep) and to count ghosts.

    cluster_state.py REDIS_PORT GROUP EXPECTED NODE_URLS STATUS_FILE...

NODE_URLS (comma-separated, or "-") are asked for /healthz: a node counts
as live only if it answers there and holds its lease, so a node killed a
moment ago does not count while its lease runs out.

Prints:
  connected  visitor sockets the generators hold (sum of their status files)
  duplicates invokes a visitor ran twice (sum)
  fields     entries in Redis `presence:presence:{GROUP}` (one per visitor
             and node that holds a socket of it, or holds it in grace)
  live_nodes nodes with a lease key `presence:node:{id}`
  online     distinct load-test visitors with an entry on a live node
  ghosts     entries that stand for no socket: on a node without a lease,
             a second entry of one visitor, or a visitor no generator
             holds (counted only when EXPECTED visitors are connected)
"""
import json
import socket
import sys
import urllib.error
import urllib.request


def resp_command(port, *args):
    """One Redis command over RESP, without a client library."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        payload = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = arg.encode()
            payload += f"${len(data)}\r\n".encode() + data + b"\r\n"
        s.sendall(payload)
        reader = s.makefile("rb")
        return read_reply(reader)


def read_reply(reader):
    line = reader.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = reader.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return [] if n < 0 else [read_reply(reader) for _ in range(n)]
    raise RuntimeError(f"unexpected reply {line!r}")


def generators(paths):
    connected = duplicates = 0
    for path in paths:
        try:
            with open(path) as f:
                status = json.load(f)
        except (OSError, ValueError):
            continue
        connected += status.get("connected", 0)
        duplicates += status.get("duplicates", 0)
    return connected, duplicates


def answering_nodes(urls):
    """Ids of the nodes at `urls` that answer /healthz (200 or 503)."""
    ids = set()
    for url in urls:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            body = e.read()
        except OSError:
            continue
        try:
            ids.add(json.loads(body)["node"])
        except (ValueError, KeyError, TypeError):
            continue
    return ids


def main():
    port, group, expected = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    urls = [] if sys.argv[4] == "-" else sys.argv[4].split(",")
    connected, duplicates = generators(sys.argv[5:])
    state = {"connected": connected, "duplicates": duplicates}
    try:
        fields = resp_command(port, "HKEYS", f"presence:presence:{group}")
        nodes = resp_command(port, "ZRANGE", "presence:nodes", "0", "-1")
        live = {n for n in nodes if resp_command(port, "EXISTS", f"presence:node:{n}") == 1}
        if urls:
            live &= answering_nodes(urls)
    except (OSError, RuntimeError) as e:
        state.update(redis=str(e))
        print(json.dumps(state))
        return
    per_visitor = {}
    ghosts = 0
    for field in fields:
        visitor, _, node = field.partition("\n")
        if node not in live:
            ghosts += 1
            continue
        per_visitor[visitor] = per_visitor.get(visitor, 0) + 1
    ghosts += sum(n - 1 for n in per_visitor.values())
    online = sum(1 for v in per_visitor if v.startswith("lt-"))
    if connected >= expected:
        ghosts += max(0, len(per_visitor) - connected)
    state.update(fields=len(fields), live_nodes=len(live), online=online, ghosts=ghosts)
    print(json.dumps(state))


if __name__ == "__main__":
    main()
