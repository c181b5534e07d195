"""NATS users and subject permissions: each service, each department's system, and an admin.

- `admin` provisions: it creates the event stream and the departments' durable consumers.
- `relay` alone publishes events (`<prefix>.>`); it reads the stream's info and its PubAcks.
- each service (`intake`, `routing`, `handling`, `verification`) may read the stream's info,
  create, read and pull from its own durable (named after it) and ack its messages, nothing else.
- `console` reads the whole stream through ordered consumers (ephemeral, no acks: its live pages
  and their replays) and replies to their flow control; it creates no durable and never publishes
  an event.
- a department `<d>` (user `dept_<d>`) may only pull from the durable `dept_<d>`, which the
  admin created with the filter `<prefix>.*.<d>.>`: it never sees another department's tasks,
  cannot subscribe to event subjects, and cannot publish.
- every user subscribes only below its own inbox prefix (`_INBOX_<user>.>`), so nobody can
  read the replies (pulled messages) meant for another.
"""

from __future__ import annotations

import json

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.messaging.bus import inbox_of

ADMIN = "admin"
SERVICE_USERS = ("relay", "intake", "routing", "handling", "verification")
CONSOLE = "console"
API = "$JS.API"


def department_user(department: str) -> str:
    return f"dept_{department}"


def _pull(stream: str, durable: str) -> list[str]:
    return [
        f"{API}.CONSUMER.INFO.{stream}.{durable}",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def permissions(user: str, stream: str, prefix: str) -> dict[str, object] | None:
    """The publish/subscribe allow-lists of `user` (None: the admin, allowed everything)."""
    if user == ADMIN:
        return None
    stream_info = f"{API}.STREAM.INFO.{stream}"
    if user == "relay":
        publish = [f"{prefix}.>", stream_info]
    elif user in SERVICE_USERS:
        publish = [
            stream_info,
            f"{API}.CONSUMER.CREATE.{stream}.{user}",
            f"{API}.CONSUMER.CREATE.{stream}.{user}.>",
            f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{user}",
            *_pull(stream, user),
        ]
    elif user == CONSOLE:
        publish = [
            stream_info,
            f"{API}.CONSUMER.CREATE.{stream}",
            f"{API}.CONSUMER.INFO.{stream}.>",
            f"$JS.FC.{stream}.>",
        ]
    elif user.startswith("dept_"):
        publish = _pull(stream, user)
    else:
        raise ValueError(f"unknown NATS user {user}")
    return {"publish": {"allow": publish}, "subscribe": {"allow": [f"{inbox_of(user)}.>"]}}


def server_conf(passwords: dict[str, str], stream: str, prefix: str) -> str:
    """The `authorization` block of nats-server.conf: every user and its permissions."""
    users = []
    for user, password in sorted(passwords.items()):
        entry: dict[str, object] = {"user": user, "password": password}
        if (allowed := permissions(user, stream, prefix)) is not None:
            entry["permissions"] = allowed
        users.append(entry)
    # nats-server's config format accepts JSON values.
    return f"authorization {{\n  users: {json.dumps(users, indent=2)}\n}}"


async def provision_departments(js: JetStreamContext, stream: str, prefix: str, departments: list[str]) -> None:
    """As admin: each department's durable, limited to its own tasks' events."""
    for department in departments:
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=department_user(department),
                filter_subject=f"{prefix}.*.{department}.>",
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
            ),
        )
