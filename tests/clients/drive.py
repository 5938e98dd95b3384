"""Drives one whole case through the Python client that openapi-python-client generated from
the served OpenAPI document: start, act, read the case with its history. Run by
tests/clients.rs as `python drive.py <generated dir> <base url> <token>`."""

import sys

sys.path.insert(0, sys.argv[1])

from yishi_client import AuthenticatedClient  # noqa: E402
from yishi_client.api.default import act, get_instance, history, start_instance  # noqa: E402
from yishi_client.models import (  # noqa: E402
    ActBody,
    ActBodyPayload,
    Actor,
    EventAction,
    EventStarted,
    History,
    InstanceDetail,
    InstanceView,
    StartBody,
    StartBodyData,
)

base, token = sys.argv[2], sys.argv[3]
client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)

started = start_instance.sync_detailed(
    client=client,
    body=StartBody(workflow="chengguan/tianshuinanlu/garden", data=StartBodyData.from_dict({"households": 120})),
)
assert started.status_code == 201, started
case = started.parsed
assert isinstance(case, InstanceView), case
assert case.active_steps == ["raise"], case.active_steps

submitted = act.sync(
    id=case.id,
    client=client,
    body=ActBody(
        action="submit",
        payload=ActBodyPayload.from_dict({"title": "空地改造成花园", "channel": "visit"}),
        on_behalf_of=Actor(id="res-1", roles=["resident"]),
    ),
)
assert isinstance(submitted, InstanceView), submitted
assert submitted.active_steps == ["small_stool"], submitted.active_steps

detail = get_instance.sync(id=case.id, client=client)
assert isinstance(detail, InstanceDetail), detail
assert detail.instance.revision == submitted.revision
assert [a.action for a in detail.accepts] == ["attend", "minutes", "conclude"], detail.accepts
assert isinstance(detail.history[0], EventStarted), type(detail.history[0])
assert detail.history[0].data["households"] == 120

events = history.sync(id=case.id, client=client)
assert isinstance(events, History), events
kinds = [type(e).__name__ for e in events.events]
actions = [e for e in events.events if isinstance(e, EventAction)]
assert [a.action for a in actions] == ["start", "submit"], kinds
assert actions[1].on_behalf_of.id == "res-1"
print(f"ok: case {case.id}, {len(events.events)} events: {', '.join(kinds)}")
