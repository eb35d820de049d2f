"""Stand-in for the RMM script that removes and re-imports a VPN client's connection profile on a
laptop: records what would be done and touches no laptop."""

from __future__ import annotations

import argparse

from _simlog import record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["remove", "import"])
    parser.add_argument("--host", required=True)
    parser.add_argument("--user", help="only this user's profile; the machine profile when omitted")
    args = parser.parse_args(argv)
    if args.action == "remove":
        result = f"{args.host}: VPN profile removed with its cached gateway certificate"
    else:
        result = f"{args.host}: standard VPN profile imported " + (
            f"for {args.user}" if args.user else "machine-wide"
        )
    record("vpn_profile", args.action, result, host=args.host, user=args.user)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
