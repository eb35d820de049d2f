"""Stand-in for the Windows Update calls of the patching runbooks (component reset, install,
reboot scheduling, uninstall): records what would be done and touches no host."""

from __future__ import annotations

import argparse
import sys

from _simlog import record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["reset-components", "install", "schedule-reboot", "uninstall"])
    parser.add_argument("--host", required=True)
    parser.add_argument("--kb", help="one update; every pending update when omitted")
    args = parser.parse_args(argv)
    if args.action == "uninstall" and not args.kb:
        print(f"{args.host}: nothing to uninstall, name the update with --kb", file=sys.stderr)
        return 2
    results = {
        "reset-components": "Windows Update components reset, SoftwareDistribution cleared",
        "install": f"{args.kb or 'pending updates'} installed, reboot required",
        "schedule-reboot": "reboot scheduled in the maintenance window",
        "uninstall": f"{args.kb} uninstalled, reboot required",
    }
    record("windows_update", args.action, f"{args.host}: {results[args.action]}", host=args.host, kb=args.kb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
