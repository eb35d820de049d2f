"""Stand-in for clearing a Windows print queue (Get-PrintJob | Remove-PrintJob) on a remote host:
records what would be done and touches no printer."""

from __future__ import annotations

import argparse

from _simlog import record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["clear"])
    parser.add_argument("--host", required=True)
    parser.add_argument("--printer", help="one queue; every queue on the host when omitted")
    args = parser.parse_args(argv)
    queues = f"queue {args.printer}" if args.printer else "all queues"
    record(
        "print_spooler", args.action, f"{args.host}: {queues} cleared", host=args.host, printer=args.printer
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
