"""Wait until the gateway reports every backend SERVING, then print the endpoints.

Runs as the last Procfile entry of `make run`; it stays alive so honcho keeps the suite up.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

from genai_gateway.settings import GatewaySettings

TIMEOUT_S = 600


def main() -> int:
    settings = GatewaySettings.from_env(os.environ)
    base = f"http://{settings.host}:{settings.port}"
    started = time.monotonic()
    status: dict = {}
    while time.monotonic() - started < TIMEOUT_S:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as reply:
                status = json.load(reply)
                break
        except urllib.error.HTTPError as exc:
            status = json.load(exc)
        except OSError:
            pass
        time.sleep(0.5)
    else:
        print(f"the suite did not become ready in {TIMEOUT_S}s: {status}", file=sys.stderr)
        return 1
    took = time.monotonic() - started
    lines = [f"GenAI suite ready in {took:.1f}s", f"  gateway   {base}  (docs {base}/docs, metrics {base}/metrics)"]
    lines += [f"  {name:<9} grpc://{target}" for name, target in settings.targets.items()]
    lines.append("Try: curl -s " + base + "/v1/tokenize -H 'content-type: application/json' -d '{\"input\": \"Hello\"}'")
    print("\n".join(lines), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
