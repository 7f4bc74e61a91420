"""A bounded request loop against a local vLLM server (127.0.0.1 only).

Waits for ``/health``, then sends ``--requests`` completion requests (token-id prompts, so no
tokenizer is needed) from ``--concurrency`` threads, and exits. Bounded in count and time.

    python serve_client.py --port 8123 --requests 24 --concurrency 6 --max-tokens 16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HOST = "127.0.0.1"


def wait_ready(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"server on {HOST}:{port} not ready after {timeout_s:.0f} s")


def model_name(port: int) -> str:
    with urllib.request.urlopen(f"http://{HOST}:{port}/v1/models", timeout=10) as r:
        return str(json.load(r)["data"][0]["id"])


def complete(port: int, model: str, index: int, prompt_len: int, max_tokens: int) -> int:
    body = {
        "model": model,
        "prompt": [(7 * index + 13 * j) % 2000 + 3 for j in range(prompt_len)],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
    }
    request = urllib.request.Request(
        f"http://{HOST}:{port}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as r:
        return int(json.load(r)["usage"]["completion_tokens"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--ready-timeout", type=float, default=240.0)
    args = parser.parse_args()
    wait_ready(args.port, args.ready_timeout)
    model = model_name(args.port)
    with ThreadPoolExecutor(args.concurrency) as pool:
        tokens = sum(
            pool.map(
                lambda i: complete(args.port, model, i, args.prompt_len, args.max_tokens),
                range(args.requests),
            )
        )
    print(f"{args.requests} requests, {tokens} completion tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
