"""Stand-in for the directory cmdlets (Set-ADAccountPassword, Unlock-ADAccount, Get-ADUser) that
the identity runbooks call: records what would be done and touches no directory."""

from __future__ import annotations

import argparse

from _simlog import record

RESULTS = {
    "reset-password": "{user}: password reset (change at next sign-in), temporary password sent out of band",
    "unlock": "{user}: account unlocked (lockoutTime cleared)",
    "status": "{user}: enabled, not locked out",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=sorted(RESULTS))
    parser.add_argument("--user", required=True)
    parser.add_argument("--reason")
    args = parser.parse_args(argv)
    record(
        "ad_account",
        args.action,
        RESULTS[args.action].format(user=args.user),
        user=args.user,
        reason=args.reason,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
