"""The least `taskrpc status ID` can be with what issue 12 requires: the bench's floor row.

argparse (one command), a request built and an answer read with jsonrpcclient, one
HTTP/1.1 exchange on a `socket`, the status printed, and the exit `cli.entry` makes. No
wire contract, no error handling, no status line: what no implementation of the command
can do without. `taskrpc status ID`'s distance to it is what our own code costs; its
distance to `python -c pass` is what those requirements cost (bench row "`taskrpc status
ID` wall time").

    python -c "from bench.cli_floor import main; main()" --url http://127.0.0.1:PORT status ID

(imported, not run as a script: a script is compiled on every run, a module is cached as
the installed `taskrpc`'s are)
"""

import argparse
import json
import os
import socket
import sys

from jsonrpcclient import Ok, parse, request


def main() -> None:
    """`status ID`: parse, call, print the status, end as `cli.entry` does."""
    parser = argparse.ArgumentParser(prog="taskrpc")
    parser.add_argument("--url", required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status").add_argument("id")
    args = parser.parse_args()
    where = args.url.removeprefix("http://")
    host, port = where.split(":")
    body = json.dumps(request("status", params={"id": args.id}, id=1)).encode()
    head = f"POST /rpc HTTP/1.1\r\nHost: {where}\r\nContent-Type: application/json\r\n"
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        answer = sock.makefile("rb")
        answer.readline()  # the status line
        length = 0
        while (line := answer.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        response = parse(json.loads(answer.read(length)))
    if not isinstance(response, Ok):
        sys.exit(f"cli_floor: {response}")
    print(response.result["status"])
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
