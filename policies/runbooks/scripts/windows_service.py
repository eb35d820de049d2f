"""Stand-in for Get-Service / Restart-Service on a remote Windows host: records what would be
done and touches no service."""

from __future__ import annotations

import argparse

from _simlog import record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["status", "restart"])
    parser.add_argument("--host", required=True)
    parser.add_argument("--service", required=True)
    args = parser.parse_args(argv)
    result = f"{args.host}: {args.service} " + (
        "restarted, Running" if args.action == "restart" else "Running"
    )
    record("windows_service", args.action, result, host=args.host, service=args.service)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
