"""Seeded demo tickets of a fictitious MSP, and the canonical batch format they are written in.

The tickets exist so the pipeline (ingestion, triage, escalation, the review UI) can be shown
and tested without a customer's data; they say nothing about model quality, which is measured
on real tickets elsewhere. Everything is drawn from one `random.Random(seed)`, so a demo run
and a test see the same tickets for the same arguments.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from hitl.models import ClientSpec, ClientTier, Priority, TicketRecord, TicketStatus
from policies.clients import load_client_catalog

CANONICAL_COLUMNS: tuple[str, ...] = (
    "external_id",
    "client",
    "requester_email",
    "subject",
    "body",
    "created_at",
    "updated_at",
    "priority",
    "urgency",
    "impact",
    "category",
    "business_service",
    "queue",
    "ticket_type",
    "language",
    "resolution",
    "status",
)

DEFAULT_NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # fixed, so the default output never changes
WINDOW = timedelta(days=14)
NO_CLIENT_SHARE = 0.05
REOPEN_SHARE = 0.10
RESOLVED_SHARE = 1 / 3

_PRIORITIES = (Priority.critical, Priority.high, Priority.medium, Priority.low)

# Bigger clients buy higher tiers, so the tier stands in for head count when spreading tickets.
_TIER_WEIGHT: dict[ClientTier, float] = {
    ClientTier.platinum: 6,
    ClientTier.gold: 4,
    ClientTier.silver: 3,
    ClientTier.bronze: 2,
    ClientTier.standard: 1,
}

# (urgency 0-3, impact 0-4) ranges per priority, so the three fields never contradict each other.
_URGENCY: dict[Priority, tuple[int, int]] = {
    Priority.critical: (3, 3),
    Priority.high: (2, 3),
    Priority.medium: (1, 2),
    Priority.low: (0, 1),
}
_IMPACT: dict[Priority, tuple[int, int]] = {
    Priority.critical: (3, 4),
    Priority.high: (2, 3),
    Priority.medium: (1, 2),
    Priority.low: (0, 1),
}


@dataclass(frozen=True)
class _Scenario:
    """One kind of problem: its subject, body and resolution are drawn together so they agree."""

    subjects: tuple[str, ...]
    bodies: tuple[str, ...]
    resolutions: tuple[str, ...]
    # (phrase for {system}, business_service, queue) when the affected service varies.
    systems: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class _Category:
    name: str
    weight: float
    queue: str
    business_service: str
    ticket_type: Literal["incident", "request"]
    priority_weights: tuple[float, float, float, float]  # critical, high, medium, low
    scenarios: tuple[_Scenario, ...]
    pools: dict[str, tuple[str, ...]] = field(default_factory=dict)


_FIRST_NAMES = (
    "Dana", "Marcus", "Priya", "Tom", "Elena", "Kwame", "Sofia", "Liam", "Aisha", "Greg", "Mei",
    "Carlos", "Hannah", "Raj", "Olivia", "Derek", "Fatima", "Jonas", "Rosa", "Ben", "Yuki", "Nadia",
    "Patrick", "Chloe", "Samuel", "Ingrid", "Luis", "Grace", "Omar", "Tessa",
)  # fmt: skip
_LAST_NAMES = (
    "Morales", "Whitfield", "Nair", "Becker", "Kowalski", "Mensah", "Rossi", "O'Brien", "Haddad",
    "Lindqvist", "Chen", "Alvarez", "Price", "Patel", "Murphy", "Novak", "Rahman", "Fischer",
    "Duarte", "Sullivan", "Tanaka", "Petrova", "Doyle", "Martin", "Okafor", "Berg", "Navarro",
    "Hughes", "Aziz", "Keller",
)  # fmt: skip
_OFFICES = (
    "head office", "the Riverside office", "Building B", "Warehouse 2", "the Oak Street site",
    "the 3rd floor", "the downtown office", "the Fairview branch", "the north campus", "reception",
)  # fmt: skip
_SERVERS = ("FS01", "DC01", "DC02", "SQL02", "APP03", "RDS01", "HV02", "PRINT01", "ERP01", "FILES02")
_MODELS = (
    "Dell Latitude 5440", "Lenovo ThinkPad T14", "HP EliteBook 840 G9", "Dell OptiPlex 7010",
    "Lenovo ThinkPad X1 Carbon", "Microsoft Surface Laptop 5",
)  # fmt: skip
_PRINTER_MODELS = ("HP LaserJet M507", "Kyocera TASKalfa 3554ci", "Brother MFC-L8900", "Canon iR-ADV C3826")
_DEPTS = (
    "accounts payable", "reception", "dispatch", "HR", "sales", "the front desk", "operations",
    "finance", "admissions", "production",
)  # fmt: skip
_ROLES = (
    "office manager", "paralegal", "dental hygienist", "dispatcher", "teacher", "accounts assistant",
    "production planner", "volunteer coordinator", "payroll clerk", "receptionist",
)  # fmt: skip
_APPS = (
    "Microsoft Teams", "SharePoint", "QuickBooks", "Dentrix", "Clio", "SAP Business One", "Sage 50",
    "PowerSchool", "the ERP", "the CRM",
)  # fmt: skip
_PORTS = (
    ("443", "HTTPS"), ("3389", "RDP"), ("22", "SFTP"), ("1433", "SQL Server"), ("8443", "HTTPS"),
    ("5060", "SIP"), ("21", "FTP"), ("25", "SMTP"),
)  # fmt: skip
_TIMES = ("7:30", "8:15", "9:00", "9:40", "10:20", "11:05", "13:30", "14:10", "15:45", "16:30")
_GREETINGS = ("Hi,", "Hello team,", "Hi support,", "Good morning,", "Hi all,", "Hello,")
_SIGN_OFFS = (
    "Thanks,\n{first}",
    "Thanks, {first}",
    "Regards,\n{user}",
    "Thank you!",
    "Many thanks.",
    "{first}",
)

# Every reopen phrase says "reopen" or "<nth> time", which is what escalation rules look for.
_REOPENS = (
    "This is the third time I'm reporting this.",
    "Reopening this, the problem came back this morning.",
    "This is the second time this week this has happened.",
    "I'm reopening this because it was never actually fixed.",
    "Fourth time this month, can someone look at the root cause?",
)
_REOPENS_WITH_REF = (
    "Reopening {ref}, the same problem is back.",
    "This is the third time, see {ref} from earlier.",
    "Same issue as {ref}, which was closed without a fix, so I'm reopening it.",
)

_OUTAGE_SUBJECTS = (
    "URGENT: {system} down at {office}",
    "{system_cap} outage - whole office affected",
    "Nobody can access {system}",
    "Site down: {office}",
    "P1 - {system} not working for all users",
)
_OUTAGE_BODIES = (
    "{system_cap} is down for everyone at {office} since about {time}. Nobody can work and we have clients "
    "waiting. Please call me back on extension {ext} as soon as possible.",
    "All users at {office} lost {system} at once about {minutes} minutes ago. We haven't changed anything on "
    "our side. This is stopping the whole {dept} team.",
    "We have a full outage of {system} at {office}. I've checked the obvious things (power, cables) and "
    "restarted my PC. Please escalate, this is business critical.",
    "{system_cap} has been going up and down all morning and is now completely unavailable. {count} staff "
    "are idle. We need someone on it now.",
)

_CATEGORIES: tuple[_Category, ...] = (
    _Category(
        name="password_reset",
        weight=14,
        queue="service-desk",
        business_service="identity",
        ticket_type="request",
        priority_weights=(0.0, 0.05, 0.35, 0.60),
        scenarios=(
            _Scenario(
                subjects=(
                    "Locked out of my account",
                    "Can't log in - account locked",
                    "Account locked: {username}",
                ),
                bodies=(
                    "I'm locked out of my account after too many attempts this morning. My username is "
                    "{username} and I'm working from {office}. Can you please unlock it?",
                    "{colleague} is locked out of Windows on {laptop} and can't get past the login screen. "
                    "They are at {office} today. Could someone unlock the account and call them on "
                    "extension {ext}?",
                ),
                resolutions=(
                    "Verified the user's identity by callback, unlocked the account in Active Directory and "
                    "issued a temporary password. User confirmed they can sign in on {laptop}.",
                    "The lockouts came from an old password cached in the mail app on the user's phone. "
                    "Removed the stale account from the phone and unlocked the user.",
                ),
            ),
            _Scenario(
                subjects=(
                    "Password expired, can't sign in to {app}",
                    "Password reset for {user}",
                    "Need password reset - {username}",
                ),
                bodies=(
                    "My password expired over the weekend and the self-service reset page keeps saying "
                    "'{error}'. I need to get into {app} before my {time} meeting.",
                    "I changed my password yesterday and now {app} keeps rejecting it while Outlook works "
                    "fine. I've tried signing out and back in twice. Please help, I can't get any work "
                    "done.",
                    "Please reset the password for {user} ({username}). They are back from leave today and "
                    "the old password has expired. They can't get into {app}.",
                ),
                resolutions=(
                    "Reset the password in Entra ID with change required at next sign-in. Reminded the user "
                    "that self-service password reset is available from the portal.",
                    "Password sync to {app} was delayed; forced a directory sync and the new password works "
                    "everywhere now.",
                ),
            ),
            _Scenario(
                subjects=(
                    "MFA reset needed for {user}",
                    "New phone - can't approve sign-in",
                    "Authenticator not working",
                ),
                bodies=(
                    "I got a new phone and the authenticator app no longer works, so I can't complete the "
                    "MFA prompt. Please reset my MFA registration for {username}. I can verify my identity "
                    "over the phone.",
                    "I'm not getting the sign-in approval on my phone any more and I'm stuck at the MFA "
                    "screen. I'm at {office} and need to get into {app}. Can you help?",
                ),
                resolutions=(
                    "Cleared the MFA registration after an identity check; the user re-enrolled Microsoft "
                    "Authenticator on the new phone and signed in successfully.",
                    "Issued a temporary access pass after a callback and the user registered the new device.",
                ),
            ),
        ),
        pools={
            "app": ("Microsoft 365", "Teams", "the payroll portal", "SharePoint", "the VPN", "Citrix"),
            "error": (
                "AADSTS50053: account is locked",
                "AADSTS50126: invalid username or password",
                "The referenced account is currently locked out",
                "error 0xC000006D",
                "Password does not meet complexity requirements",
            ),
        },
    ),
    _Category(
        name="mailbox",
        weight=10,
        queue="service-desk",
        business_service="email",
        ticket_type="incident",
        priority_weights=(0.02, 0.18, 0.50, 0.30),
        scenarios=(
            _Scenario(
                subjects=(
                    "Outlook not receiving emails",
                    "Not getting external emails",
                    "Customers say emails to me bounce",
                ),
                bodies=(
                    "Since around {time} I haven't received any external email in Outlook, internal "
                    "messages still come through. Customers are telling me their messages to me bounce. Can "
                    "you check?",
                    "Nothing from outside the company has arrived in my inbox since yesterday afternoon. "
                    "{colleague} sent me a test from Gmail and it never showed up. I'm expecting signed "
                    "contracts today.",
                ),
                resolutions=(
                    "A transport rule added during last week's spam clean-up was quarantining external mail "
                    "for this user. Corrected the rule and released 14 messages from quarantine.",
                ),
            ),
            _Scenario(
                subjects=("Mailbox full - can't send", "Mailbox storage warning"),
                bodies=(
                    "I'm getting a warning that my mailbox is full ({size} GB) and I can no longer send. "
                    "I've already emptied Deleted Items. Can the mailbox be increased or archived?",
                    "Outlook says my mailbox is almost full and some emails are not being sent. I've had the "
                    "same mailbox for ten years so there's a lot in it. Can you set up an archive for me?",
                ),
                resolutions=(
                    "Enabled the online archive and applied a 2-year retention policy; mailbox is down to "
                    "31 GB and sending works again.",
                ),
            ),
            _Scenario(
                subjects=("Can't access shared mailbox {mailbox}", "Access to the {mailbox} mailbox"),
                bodies=(
                    "I need access to the shared mailbox {mailbox} for my new role in {dept}. My manager "
                    "{colleague} approved it. It should show up in Outlook on {laptop}.",
                    "The {mailbox} shared mailbox disappeared from my Outlook this morning. I still need it "
                    "to answer customer emails. {colleague} can still see it.",
                ),
                resolutions=(
                    "Granted Full Access and Send As on {mailbox}; the mailbox auto-mapped in Outlook after "
                    "a restart.",
                ),
            ),
            _Scenario(
                subjects=("Emails bouncing back with {error}", "Undeliverable: emails to our supplier"),
                bodies=(
                    "Messages to one of our suppliers are bouncing with '{error}'. It started today and it "
                    "affects everyone at {office}. We send them orders daily so this is urgent for us.",
                ),
                resolutions=(
                    "The recipient's domain had an outdated MX record cached on our outbound connector. "
                    "Cleared it and resent the queued messages, the supplier confirmed receipt.",
                    "Our sending IP was on a blocklist after a compromised account last month; had it "
                    "delisted and confirmed SPF and DKIM are aligned.",
                ),
            ),
            _Scenario(
                subjects=("Outlook keeps asking for password", "Outlook password prompt loop"),
                bodies=(
                    "Outlook on {laptop} keeps popping up a password prompt every few minutes even after I "
                    "enter the right password. Webmail works fine. It started after the last update.",
                ),
                resolutions=(
                    "Rebuilt the Outlook profile on {laptop} and cleared the cached credentials in "
                    "Credential Manager; no more password prompts.",
                ),
            ),
            _Scenario(
                subjects=("Calendar not syncing on phone", "iPhone calendar missing meetings"),
                bodies=(
                    "My calendar stopped syncing to my iPhone, new meetings only show in Outlook on the "
                    "desktop. I've removed and re-added the account once but nothing changed.",
                ),
                resolutions=(
                    "The phone used the built-in Mail app with a legacy protocol; moved the user to the "
                    "Outlook mobile app and the calendar syncs again.",
                ),
            ),
        ),
        pools={
            "error": (
                "550 5.1.1 RESOLVER.ADR.RecipNotFound",
                "554 5.7.1 Recipient address rejected",
                "550 5.7.606 Access denied, banned sending IP",
                "451 4.4.0 DNS query failed",
            ),
        },
    ),
    _Category(
        name="vpn",
        weight=8,
        queue="network",
        business_service="remote-access",
        ticket_type="incident",
        priority_weights=(0.05, 0.35, 0.45, 0.15),
        scenarios=(
            _Scenario(
                subjects=(
                    "VPN won't connect from home",
                    "{vpn_client} error {error}",
                    "Remote access not working",
                ),
                bodies=(
                    "{vpn_client} fails to connect from home with error {error}. It worked yesterday and "
                    "nothing changed on my laptop ({laptop}). I'm working remotely all week.",
                    "Several remote staff report that {vpn_client} hangs at 'Connecting' since this "
                    "morning. We have people at client sites who need {app}. Please treat this as a "
                    "priority.",
                ),
                resolutions=(
                    "The VPN gateway certificate had expired overnight. Renewed it and users reconnected "
                    "without changes on their side.",
                    "Reinstalled {vpn_client} on {laptop} and re-imported the connection profile.",
                ),
            ),
            _Scenario(
                subjects=("VPN drops every few minutes", "VPN keeps disconnecting"),
                bodies=(
                    "The VPN connects but drops every 5-10 minutes, which kills my remote desktop session "
                    "to {server}. My home internet is otherwise stable. This makes it impossible to work in "
                    "{app}.",
                ),
                resolutions=(
                    "User's home router was dropping idle UDP sessions; switched the client profile to TCP "
                    "443 and the connection has been stable for a day.",
                ),
            ),
            _Scenario(
                subjects=("Can't reach {server} over VPN", "VPN connected but no network drives"),
                bodies=(
                    "I can connect to the VPN but can't reach {server} or any mapped drives. Ping to {ip} "
                    "times out. {colleague} has the same problem from home.",
                ),
                resolutions=(
                    "Split-tunnel routes were missing the {ip} subnet after a firewall update; added the "
                    "route and the user can reach {server} again.",
                ),
            ),
        ),
        pools={
            "vpn_client": (
                "GlobalProtect",
                "FortiClient",
                "Cisco AnyConnect",
                "WireGuard",
                "OpenVPN Connect",
            ),
            "error": ("809", "691", "720", "812", "-14", "-6005", "0x80070005"),
        },
    ),
    _Category(
        name="printer",
        weight=9,
        queue="end-user-computing",
        business_service="printing",
        ticket_type="incident",
        priority_weights=(0.0, 0.10, 0.45, 0.45),
        scenarios=(
            _Scenario(
                subjects=("Printer at {office} not printing", "{printer} offline"),
                bodies=(
                    "The printer {printer} ({printer_model}) at {office} shows offline for everyone. Print "
                    "jobs are just sitting in the queue. We've turned it off and on again already.",
                ),
                resolutions=(
                    "The printer had picked up a new DHCP address. Set a reservation for it and updated the "
                    "port on PRINT01; printing restored for all users.",
                ),
            ),
            _Scenario(
                subjects=("Error on {printer}: {error}", "{printer_model} showing an error"),
                bodies=(
                    "{printer} displays '{error}' and won't print anything. There's no visible paper jam. We "
                    "need it for {dept} forms this afternoon.",
                ),
                resolutions=(
                    "Fuser unit reported a fault; logged a service call with the vendor and the engineer "
                    "replaced the fuser.",
                    "Cleared a torn sheet stuck behind the rear door and reset the error; test page printed.",
                ),
            ),
            _Scenario(
                subjects=("Scan to email not working", "Scans not arriving by email"),
                bodies=(
                    "Scan to email on the {printer_model} stopped working and the scans never arrive. It "
                    "worked fine until last week. Could it be related to the email password change?",
                ),
                resolutions=(
                    "Scan to email used the old SMTP password; updated the relay credentials on the device "
                    "and sent a test scan successfully.",
                ),
            ),
            _Scenario(
                subjects=("Print jobs stuck in queue", "Can't print from {laptop}"),
                bodies=(
                    "My print jobs get stuck in the queue on {laptop} and never come out, other people can "
                    "print fine. I've restarted my laptop. Can you clear the queue remotely?",
                ),
                resolutions=("Cleared the stuck jobs and restarted the print spooler on {laptop}.",),
            ),
        ),
        pools={
            "error": ("49.4C02 Error", "Paper jam in Tray 2", "Replace toner cartridge", "C6000 Fuser error"),
        },
    ),
    _Category(
        name="patching",
        weight=6,
        queue="infrastructure",
        business_service="endpoint",
        ticket_type="incident",
        priority_weights=(0.02, 0.18, 0.50, 0.30),
        scenarios=(
            _Scenario(
                subjects=(
                    "Windows updates failing on {laptop}",
                    "Patch {kb} failed to install",
                    "{laptop} non-compliant in patch report",
                ),
                bodies=(
                    "Windows Update on {laptop} keeps failing with {error} and the machine is now {days} "
                    "cumulative updates behind. The RMM dashboard flags it as non-compliant. Please look "
                    "into it.",
                    "{kb} failed to install on {count} machines at {office} with {error}. The rest of the "
                    "fleet patched fine. Please check before the compliance report is due.",
                ),
                resolutions=(
                    "Reset the Windows Update components and cleared SoftwareDistribution on {laptop}; {kb} "
                    "installed after a reboot.",
                    "Ran DISM /RestoreHealth and SFC to repair the component store, then the update "
                    "installed.",
                ),
            ),
            _Scenario(
                subjects=("{server} pending reboot after patching", "Reboot needed for {server}"),
                bodies=(
                    "{server} has been pending a reboot since Tuesday's patch window, and the maintenance "
                    "window was missed. Can we schedule the reboot for tonight after 20:00? Users need it "
                    "during the day.",
                ),
                resolutions=(
                    "Rebooted {server} in the agreed window at 21:00 and confirmed all services started.",
                ),
            ),
            _Scenario(
                subjects=("Server stuck on 'Working on updates'", "{server} not back after updates"),
                bodies=(
                    "After last night's updates {server} has been stuck on 'Working on updates 100%' for "
                    "over an hour. We need it back before staff arrive.",
                ),
                resolutions=(
                    "The update had finished but the server hung at shutdown. Reset it from the hypervisor "
                    "console, verified services and confirmed the patch reports as installed.",
                ),
            ),
            _Scenario(
                subjects=("Update broke {app}", "{app} crashing since updates"),
                bodies=(
                    "Since this week's updates, {app} crashes on launch on {laptop}. I can't roll back "
                    "because I have no admin rights. Other users seem to have the same problem.",
                ),
                resolutions=(
                    "Known issue with the update and {app}; applied the vendor's hotfix and paused the "
                    "update ring until the fix is in the next cumulative update.",
                ),
            ),
        ),
        pools={"error": ("0x80070643", "0x800f0922", "0x8024402c", "0x80073712", "0x800f081f")},
    ),
    _Category(
        name="firewall_change",
        weight=4,
        queue="network",
        business_service="network",
        ticket_type="request",
        priority_weights=(0.0, 0.20, 0.55, 0.25),
        scenarios=(
            _Scenario(
                subjects=(
                    "Firewall rule request: allow {port_name} from {ext_ip}",
                    "Open port {port} for {app} vendor",
                ),
                bodies=(
                    "Please add a rule to allow {port_name} (TCP {port}) from {ext_ip} to {ip} ({server}). "
                    "Our {app} vendor needs it for remote support. It can be limited to business hours.",
                    "We're moving {app} to a new provider and their servers at {ext_ip} need to reach "
                    "{server} on port {port}. Go-live is {start_date}. Please confirm once the rule is in "
                    "place.",
                ),
                resolutions=(
                    "Added a rule allowing TCP {port} from {ext_ip} to {ip}, scoped to business hours, and "
                    "logged the change with the approver's name.",
                ),
            ),
            _Scenario(
                subjects=("Whitelist IP {ext_ip}", "Allow outbound SFTP to our bank"),
                bodies=(
                    "Our bank requires us to whitelist their SFTP server {ext_ip} on port 22 outbound. This "
                    "is needed for the payroll file transfer. Approved by {colleague}.",
                ),
                resolutions=(
                    "Added an outbound rule to {ext_ip} on TCP 22 for the payroll server only; a test "
                    "transfer succeeded.",
                ),
            ),
            _Scenario(
                subjects=("Remove temporary firewall rule for {ext_ip}", "Clean up vendor firewall rule"),
                bodies=(
                    "The temporary rule that allowed {ext_ip} to reach {ip} on port {port} is no longer "
                    "needed because the vendor project finished. Please remove it and confirm.",
                ),
                resolutions=(
                    "Removed the temporary rule for {ext_ip} and saved a config backup before the change.",
                ),
            ),
            _Scenario(
                subjects=("Block traffic from {ext_ip}", "Repeated login attempts from {ext_ip}"),
                bodies=(
                    "We're seeing repeated login attempts from {ext_ip} in the {server} logs. Can you block "
                    "that address at the firewall? The log excerpt is attached.",
                ),
                resolutions=(
                    "Blocked {ext_ip} on the WAN interface and added it to the threat feed; no further "
                    "attempts logged.",
                ),
            ),
        ),
    ),
    _Category(
        name="backup_failure",
        weight=5,
        queue="infrastructure",
        business_service="backup",
        ticket_type="incident",
        priority_weights=(0.10, 0.50, 0.35, 0.05),
        scenarios=(
            _Scenario(
                subjects=(
                    "Backup job failed: {server}",
                    "Veeam job '{job}' failed",
                    "Nightly backup warning on {server}",
                ),
                bodies=(
                    "Last night's backup of {server} failed with '{error}'. The last good restore point is "
                    "{days} days old. Please investigate before tonight's run.",
                    "The job '{job}' ended with a warning: {error}. Only part of the VMs were processed. Can "
                    "someone check the repository space?",
                ),
                resolutions=(
                    "Restarted the VSS writers on {server} and ran the job manually; it completed "
                    "successfully.",
                    "The repository was at 98% capacity. Removed orphaned restore points and extended the "
                    "volume by 2 TB; tonight's run completed.",
                ),
            ),
            _Scenario(
                subjects=("Offsite replication failed", "Cloud backup copy out of policy"),
                bodies=(
                    "Offsite replication to the cloud repository has failed since the weekend. The local "
                    "jobs are fine. We're out of policy for offsite copies.",
                ),
                resolutions=(
                    "Offsite copy failed because the cloud gateway's credentials had rotated. Updated them "
                    "and the backlog replicated overnight.",
                ),
            ),
            _Scenario(
                subjects=("Backup failed {days} nights in a row", "Repeated backup failures on {server}"),
                bodies=(
                    "We received the automated alert that the backup of {server} has failed {days} nights "
                    "in a row. This server holds the {app} data. Please fix it and run a manual job.",
                ),
                resolutions=(
                    "The backup agent service on {server} had been disabled by a software update. Re-enabled "
                    "it, ran a full backup and verified a test restore.",
                ),
            ),
        ),
        pools={
            "error": (
                "VSS error 0x800423F4",
                "Failed to create VM snapshot",
                "Not enough storage space on the target repository",
                "Agent not responding",
                "Access is denied (0x80070005)",
            ),
            "job": ("Daily-FileServers", "SQL-Hourly-Logs", "M365-Backup", "Nightly-VMs", "DC-SystemState"),
        },
    ),
    _Category(
        name="outage",
        weight=4,
        queue="infrastructure",
        business_service="network",
        ticket_type="incident",
        priority_weights=(0.55, 0.35, 0.10, 0.0),
        scenarios=(
            _Scenario(
                subjects=_OUTAGE_SUBJECTS,
                bodies=_OUTAGE_BODIES,
                resolutions=(
                    "ISP confirmed a fibre cut in the area; failed over to the LTE backup line until the "
                    "circuit was repaired at 14:20.",
                    "Core switch at {office} had crashed after a power blip. Power-cycled it, replaced the "
                    "UPS battery and confirmed all VLANs are up.",
                ),
                systems=(
                    ("the internet", "network", "network"),
                    ("Wi-Fi", "network", "network"),
                    ("the phones", "telephony", "network"),
                ),
            ),
            _Scenario(
                subjects=_OUTAGE_SUBJECTS,
                bodies=_OUTAGE_BODIES,
                resolutions=(
                    "A full disk on {server} stopped the service. Freed space, restarted the service and "
                    "added a disk-space alert.",
                    "Host HV02 lost its storage path after a firmware update; failed the VMs over to the "
                    "second host and opened a case with the vendor.",
                ),
                systems=(
                    ("email", "email", "infrastructure"),
                    ("the shared drives", "file-services", "infrastructure"),
                    ("the practice management system", "business-applications", "infrastructure"),
                    ("remote desktop", "remote-access", "infrastructure"),
                ),
            ),
        ),
    ),
    _Category(
        name="new_user",
        weight=8,
        queue="service-desk",
        business_service="identity",
        ticket_type="request",
        priority_weights=(0.0, 0.15, 0.55, 0.30),
        scenarios=(
            _Scenario(
                subjects=(
                    "New starter: {new_user} - {start_date}",
                    "Onboarding request for {new_user}",
                    "New employee account setup",
                    "Please set up accounts for {new_user} ({dept})",
                ),
                bodies=(
                    "{new_user} is joining {dept} on {start_date}. Please create their Microsoft 365 "
                    "account, add them to the {dept} distribution list and give them access to {app}. They "
                    "will sit at {office}.",
                    "We have a new hire starting {start_date}: {new_user}, {role}. They need a laptop, "
                    "email, and the same access as {colleague}. Please let me know if you need a signed "
                    "form.",
                    "Please onboard {new_user} who starts {start_date} at {office}. Needs a laptop, a phone "
                    "extension and a {app} licence. Manager is {colleague}.",
                    "Can you set up accounts for our new {role}, {new_user}? Start date is {start_date}. "
                    "Mirror permissions from {colleague}, except no access to the finance share.",
                ),
                resolutions=(
                    "Created the account, assigned a Microsoft 365 Business Premium licence and added the "
                    "groups mirrored from {colleague}. Laptop {laptop} imaged and ready for collection.",
                    "Onboarding checklist completed; credentials sent to the manager by secure link.",
                    "Account, mailbox and {app} access set up; phone extension {ext} assigned.",
                ),
            ),
        ),
    ),
    _Category(
        name="software_install",
        weight=9,
        queue="end-user-computing",
        business_service="endpoint",
        ticket_type="request",
        priority_weights=(0.0, 0.05, 0.40, 0.55),
        scenarios=(
            _Scenario(
                subjects=(
                    "Install {install_app} on {laptop}",
                    "Software request: {install_app}",
                    "Need {install_app} for a project",
                ),
                bodies=(
                    "Could you please install {install_app} on my laptop ({laptop})? I don't have admin "
                    "rights. My manager {colleague} has approved the licence.",
                    "I need {install_app} for a client project starting next week. Can it be installed on "
                    "{laptop} and {laptop2}? Both users are in {dept}.",
                    "Requesting {install_app} for the {dept} team at {office}, {count} seats. We can pay for "
                    "the licences from our budget. Please let me know the cost first.",
                ),
                resolutions=(
                    "Deployed {install_app} to {laptop} through Intune and confirmed it launches.",
                    "Licence purchased and assigned; {install_app} pushed via the RMM software policy.",
                ),
            ),
            _Scenario(
                subjects=(
                    "Please update {install_app} to the latest version",
                    "{install_app} update needs admin rights",
                ),
                bodies=(
                    "{install_app} keeps telling me an update is available but the installer asks for admin "
                    "credentials. Please push the latest version to {laptop}. It's currently on an old "
                    "release.",
                ),
                resolutions=(
                    "Updated {install_app} to the current release on {laptop} and enabled automatic updates.",
                ),
            ),
        ),
        pools={
            "install_app": (
                "Adobe Acrobat Pro",
                "Microsoft Visio",
                "Zoom",
                "AutoCAD LT",
                "Power BI Desktop",
                "7-Zip",
                "Notepad++",
                "Slack",
                "Microsoft Project",
                "Snagit",
            ),
        },
    ),
    _Category(
        name="hardware_failure",
        weight=8,
        queue="end-user-computing",
        business_service="endpoint",
        ticket_type="incident",
        priority_weights=(0.05, 0.30, 0.45, 0.20),
        scenarios=(
            _Scenario(
                subjects=("Laptop won't turn on", "{laptop} dead - no power"),
                bodies=(
                    "My laptop ({laptop}, {model}) won't power on at all this morning, no lights when I "
                    "plug in the charger. I have client meetings today. Is there a spare I can use?",
                ),
                resolutions=(
                    "Diagnostics confirmed a motherboard failure; warranty repair booked with the vendor "
                    "and a loan laptop issued.",
                ),
            ),
            _Scenario(
                subjects=("{laptop} screen flickering", "Screen goes black on {laptop}"),
                bodies=(
                    "The screen on {laptop} flickers and sometimes goes black for a few seconds. It's worse "
                    "when I move the lid. It's a {model}, about three years old.",
                ),
                resolutions=(
                    "Hardware diagnostics failed on the display cable; warranty repair booked and a loan "
                    "laptop issued.",
                ),
            ),
            _Scenario(
                subjects=("Disk error on {desktop}", "{desktop} won't boot"),
                bodies=(
                    "{desktop} at {office} shows '{error}' at startup and won't boot into Windows. The user "
                    "({colleague}) can't work. Can someone come on site?",
                ),
                resolutions=(
                    "Replaced the failing disk in {desktop}, restored the user profile from OneDrive and "
                    "confirmed it boots.",
                ),
            ),
            _Scenario(
                subjects=("{model} overheating and shutting down", "Laptop switches itself off"),
                bodies=(
                    "My {model} gets very hot and shuts itself off several times a day. The fan is really "
                    "loud before it happens. I've lost unsaved work twice.",
                ),
                resolutions=(
                    "Cleaned the fan and reapplied thermal paste; no more thermal shutdowns under load.",
                ),
            ),
            _Scenario(
                subjects=("Broken keyboard on {laptop}", "Keys not working after a spill"),
                bodies=(
                    "Several keys on {laptop} stopped working after a coffee spill. An external keyboard "
                    "works for now. Can the keyboard be replaced under warranty?",
                ),
                resolutions=(
                    "Accidental damage is not covered by the warranty; ordered a replacement keyboard and "
                    "fitted it the next day.",
                ),
            ),
            _Scenario(
                subjects=("Docking station not detecting monitors", "No display through the dock"),
                bodies=(
                    "The docking station at my desk stopped detecting both monitors. The laptop ({laptop}) "
                    "works on its own. I've tried another USB-C cable.",
                ),
                resolutions=(
                    "Updated the dock firmware and display drivers on {laptop}; both monitors detected.",
                ),
            ),
        ),
        pools={
            "error": (
                "SMART failure predicted on hard disk 0",
                "No bootable device",
                "Error 2000-0142",
                "INACCESSIBLE_BOOT_DEVICE",
            ),
        },
    ),
    _Category(
        name="phishing_report",
        weight=7,
        queue="security",
        business_service="security",
        ticket_type="incident",
        priority_weights=(0.15, 0.45, 0.30, 0.10),
        scenarios=(
            _Scenario(
                subjects=("Suspicious email - possible phishing", "Phishing? '{phish_subject}'"),
                bodies=(
                    "I received an email from {phish_sender} with the subject '{phish_subject}'. It asks me "
                    "to sign in to view a document. I haven't clicked anything and I'm forwarding it for "
                    "you to check.",
                ),
                resolutions=(
                    "Confirmed phishing. Purged the message from all mailboxes, blocked the sender domain "
                    "and reported the URL to Microsoft.",
                ),
            ),
            _Scenario(
                subjects=("I clicked a link in a suspicious email", "Entered my password on a fake page"),
                bodies=(
                    "I think I clicked a link in a phishing email about '{phish_subject}' and entered my "
                    "password before I realised. It was about {minutes} minutes ago. What should I do?",
                ),
                resolutions=(
                    "Reset the user's password, revoked all sessions and checked sign-in logs and inbox "
                    "rules; no suspicious activity found after the click.",
                ),
            ),
            _Scenario(
                subjects=("Spoofed email from our director", "Gift card scam email"),
                bodies=(
                    "Several people at {office} got an email claiming to be from our director asking them to "
                    "buy gift cards. The sender is {phish_sender}. Nobody has replied as far as I know.",
                ),
                resolutions=(
                    "Confirmed impersonation from an external look-alike domain; blocked it and added an "
                    "external-sender warning banner.",
                ),
            ),
            _Scenario(
                subjects=("Fake invoice email received", "Supplier bank details changed?"),
                bodies=(
                    "We got an invoice email from a supplier with new bank details, sent from "
                    "{phish_sender}. It looks almost identical to their usual emails. Accounts payable has "
                    "paused the payment until you confirm.",
                ),
                resolutions=(
                    "Verified by phone with the supplier that their bank details have not changed; told "
                    "accounts payable to delete the email.",
                ),
            ),
        ),
        pools={
            "phish_sender": (
                "it-support@micros0ft-helpdesk.com",
                "no-reply@docusign-secure-mail.net",
                "accounts@paypa1-billing.com",
                "director.office@outlook-mail.co",
                "sharepoint@files-0365share.com",
                "billing@dhl-parcel-notice.com",
            ),
            "phish_subject": (
                "Your mailbox storage is full",
                "Action required: password expires today",
                "Shared document: Q4 Bonus Review.pdf",
                "Overdue invoice INV-20931",
                "Your parcel could not be delivered",
                "DocuSign: please review and sign",
            ),
        },
    ),
)

CATEGORIES: tuple[str, ...] = tuple(category.name for category in _CATEGORIES)


# Defaults for template slots drawn from a fixed list; a category's `pools` override them.
_POOLS: dict[str, tuple[str, ...]] = {
    "server": _SERVERS,
    "model": _MODELS,
    "printer_model": _PRINTER_MODELS,
    "office": _OFFICES,
    "dept": _DEPTS,
    "role": _ROLES,
    "app": _APPS,
    "install_app": ("Adobe Acrobat Pro", "Zoom", "Microsoft Visio", "Notepad++"),
    "error": ("0x80004005", "0x80070005", "error 1603"),
    "vpn_client": ("GlobalProtect", "FortiClient"),
    "job": ("Nightly-VMs", "Daily-FileServers"),
    "phish_sender": ("it-support@micros0ft-helpdesk.com", "billing@dhl-parcel-notice.com"),
    "phish_subject": ("Your mailbox storage is full", "Your parcel could not be delivered"),
    "mailbox": ("Billing", "Front Desk", "Orders", "HR", "Admissions", "Dispatch", "Info"),
}


def _requester(username: str, client: str | None) -> str | None:
    """The demo requester's address at their company (no draw from the generator: adding it kept
    every other field of a seeded batch as it was)."""
    if client is None:
        return None

    def ascii_slug(text: str, keep: str) -> str:
        plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
        return re.sub(rf"[^a-z0-9{keep}]+", "-" if keep == "" else "", plain).strip("-.")

    return f"{ascii_slug(username, '.') or 'user'}@{ascii_slug(client, '')}.example"


def _slots(rng: random.Random, category: _Category, created_at: datetime, system: str) -> dict[str, str]:
    """Every slot is drawn for every ticket: templates can then use any slot without bookkeeping."""
    slots = {name: rng.choice(category.pools.get(name, pool)) for name, pool in _POOLS.items()}
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    port, port_name = rng.choice(_PORTS)
    start = created_at + timedelta(days=rng.randint(3, 14))
    while start.weekday() >= 5:  # people start on a weekday
        start += timedelta(days=1)
    slots.update(
        first=first,
        user=f"{first} {last}",
        username=f"{first[0]}{last}".lower().replace("'", ""),
        colleague=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
        new_user=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
        laptop=f"LT-{rng.randint(100, 999):04d}",
        laptop2=f"LT-{rng.randint(100, 999):04d}",
        desktop=f"WS-{rng.randint(10, 299):04d}",
        printer=f"PRN-{rng.randint(1, 4)}F-{rng.randint(1, 3):02d}",
        mailbox=f"'{slots['mailbox']}'",
        size=rng.choice(("49.5", "49.8", "98.9", "99.2")),
        ip=f"10.{rng.randint(0, 30)}.{rng.randint(0, 20)}.{rng.randint(2, 250)}",
        ext_ip=f"{rng.choice(('203.0.113', '198.51.100', '192.0.2'))}.{rng.randint(2, 254)}",
        port=port,
        port_name=port_name,
        kb=f"KB50{rng.randint(30000, 49999)}",
        time=rng.choice(_TIMES),
        ext=str(rng.randint(200, 499)),
        days=str(rng.randint(2, 6)),
        count=str(rng.randint(3, 25)),
        minutes=str(rng.choice((5, 10, 15, 20, 30, 45))),
        start_date=f"{start:%A} {start.day} {start:%B}",
        system=system,
        system_cap=system[0].upper() + system[1:],
    )
    return slots


def _created_at(rng: random.Random, now: datetime) -> datetime:
    """Within the 14 days before `now`, mostly in office hours, as real ticket volume is."""
    moment = now
    for _ in range(4):
        moment = now - timedelta(seconds=rng.randint(60, int(WINDOW.total_seconds())))
        if (moment.weekday() < 5 and 7 <= moment.hour < 19) or rng.random() < 0.3:
            break
    return moment


def _reopen_sentence(rng: random.Random, earlier: list[str]) -> str:
    if earlier and rng.random() < 0.4:
        return rng.choice(_REOPENS_WITH_REF).format(ref=rng.choice(earlier[-5:]))
    return rng.choice(_REOPENS)


def generate_tickets(
    count: int = 60,
    seed: int = 7,
    now: datetime | None = None,
    clients: dict[str, ClientSpec] | None = None,
) -> list[TicketRecord]:
    """Tickets numbered in creation order, so a reopen can cite an earlier ticket of its client."""
    if count < 0:
        raise ValueError(f"count must be 0 or more, got {count}")
    if now is None:
        now = DEFAULT_NOW
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    catalog = load_client_catalog() if clients is None else clients
    names = sorted(catalog)  # insertion order of the catalog must not change the output
    client_weights = [_TIER_WEIGHT[catalog[name].tier] for name in names]
    category_weights = [category.weight for category in _CATEGORIES]
    rng = random.Random(seed)

    created = sorted(_created_at(rng, now) for _ in range(count))
    history: list[tuple[str, str | None, str]] = []  # (external_id, client, category) so far
    records: list[TicketRecord] = []
    for index, created_at in enumerate(created):
        external_id = f"DEMO-{index + 1:06d}"
        category = rng.choices(_CATEGORIES, weights=category_weights)[0]
        client = None
        if names and rng.random() >= NO_CLIENT_SHARE:
            client = rng.choices(names, weights=client_weights)[0]
        priority = rng.choices(_PRIORITIES, weights=category.priority_weights)[0]
        scenario = rng.choice(category.scenarios)
        system, business_service, queue = "the service", category.business_service, category.queue
        if scenario.systems:
            system, business_service, queue = rng.choice(scenario.systems)
        slots = _slots(rng, category, created_at, system)

        subject = _fill(rng.choice(scenario.subjects), slots)
        sentences = [_fill(rng.choice(scenario.bodies), slots)]
        if rng.random() < REOPEN_SHARE:
            same_client = [eid for eid, c, _ in history if c == client]
            same_issue = [eid for eid, c, cat in history if c == client and cat == category.name]
            sentences.insert(rng.choice((0, 1)), _reopen_sentence(rng, same_issue or same_client))
            if rng.random() < 0.5:
                subject = f"[Reopened] {subject}"
        body = " ".join(sentences)
        if rng.random() < 0.5:  # half arrive by email, with greeting and sign-off
            body = f"{rng.choice(_GREETINGS)}\n\n{body}\n\n{_fill(rng.choice(_SIGN_OFFS), slots)}"

        resolved = rng.random() < RESOLVED_SHARE
        record = TicketRecord(
            external_id=external_id,
            client=client,
            requester_email=_requester(slots["username"], client),
            subject=subject,
            body=body,
            created_at=created_at,
            updated_at=created_at,
            priority=priority,
            urgency=rng.randint(*_URGENCY[priority]),
            impact=rng.randint(*_IMPACT[priority]),
            category=category.name,
            business_service=business_service,
            queue=queue,
            ticket_type=category.ticket_type,
            language="en",
            resolution=_fill(rng.choice(scenario.resolutions), slots) if resolved else None,
            status=TicketStatus.resolved if resolved else TicketStatus.new,
        )
        records.append(record)
        history.append((external_id, client, category.name))
    return records


def _fill(template: str, slots: dict[str, str]) -> str:
    return template.format_map(slots)


def _plain(value: Any) -> Any:
    """Explicit offsets rather than pydantic's `Z`, so every reader parses the zone the same way."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _resolve_format(path: Path, fmt: str | None) -> Literal["csv", "jsonl"]:
    chosen = path.suffix.lower().lstrip(".") if fmt is None else fmt
    if chosen == "csv":
        return "csv"
    if chosen == "jsonl":
        return "jsonl"
    if fmt is None:
        raise ValueError(
            f"{path}: cannot tell the batch format from the suffix; use .csv or .jsonl, or pass fmt"
        )
    raise ValueError(f"unknown batch format {fmt!r}; expected 'csv' or 'jsonl'")


def write_batch(
    path: Path,
    records: Sequence[TicketRecord],
    fmt: Literal["csv", "jsonl"] | None = None,
) -> Path:
    """Atomic (temp file + os.replace) because the scheduler may read the drop folder at any moment."""
    path = Path(path)
    chosen = _resolve_format(path, fmt)
    rows = [{column: _plain(getattr(record, column)) for column in CANONICAL_COLUMNS} for record in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    # A hidden name ending in .tmp is never mistaken for a batch; O_EXCL and mode 0o666 let the umask
    # decide the final permissions, as for any file the operator creates.
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            if chosen == "csv":
                writer = csv.writer(handle)
                writer.writerow(CANONICAL_COLUMNS)
                writer.writerows([["" if value is None else value for value in row.values()] for row in rows])
            else:
                handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path
