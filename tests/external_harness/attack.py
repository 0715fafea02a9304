"""Run inside the sandbox by test_external_harness_attacks.py: tries every way out but the proxy, then
reports what it reached as the content of its one model call (the only channel the test reads)."""

import json
import os
import socket
import sys
import urllib.request

host_port, proxy_socket, other_key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
base = os.environ["OPENAI_BASE_URL"]
found = {}


def tcp(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__


def unix(path):
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        return "connected"
    except OSError as exc:
        return type(exc).__name__


def http(path, key, body=None):
    request = urllib.request.Request(
        base.removesuffix("/v1") + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    )
    try:
        return urllib.request.urlopen(request, timeout=30).status
    except urllib.error.HTTPError as exc:
        return exc.code


chat = {"messages": [{"role": "user", "content": "as the other episode"}]}
found["host_server"] = tcp("127.0.0.1", host_port)
found["outside"] = tcp("1.1.1.1", 80)
found["proxy_socket_visible"] = os.path.exists(proxy_socket)
found["proxy_socket"] = unix(proxy_socket)
found["other_key_in_path"] = http(f"/e/{other_key}/v1/chat/completions", other_key, chat)
found["other_key_in_header"] = http("/v1/chat/completions", other_key, chat)
found["list_calls"] = http("/v1/calls", other_key)
report = {"messages": [{"role": "user", "content": "FOUND " + json.dumps(found)}]}
http("/v1/chat/completions", "anything", report)
