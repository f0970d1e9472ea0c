"""The channel access model (slct_workflows.access): one rule for every door.

Channels the runtime makes are private, named channels are open to holders of the send
permission unless a workflow restricts them, refused senders change nothing, and every send
records who sent it as the server established it.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group, Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from slct_workflows import ChannelPolicy, Forbidden, Process, register, services
from slct_workflows.access import Sender
from slct_workflows.definitions import registry
from slct_workflows.models import Channel, Event, ExternalSend, PendingCase, SendPolicy


@register("acc-maker")
@dataclass
class Maker:
    """Makes a private, an open and a restricted channel, then waits on each in turn."""

    private: str = ""
    opened: str = ""
    restricted: str = ""
    got: list = None

    def Main_Start(self, p: Process, input=None):
        self.got = []
        self.private = p.make_chan(1)
        self.opened = p.make_chan(0, policy=ChannelPolicy.open())
        self.restricted = p.make_chan(0, policy=ChannelPolicy.restricted(group="acc-approvers"))
        p.select().recv(self.private).to(self.Main_Got)

    def Main_Got(self, p: Process, value):
        self.got.append(value)
        nxt = {1: self.opened, 2: self.restricted}.get(len(self.got))
        if nxt is None:
            p.finish(self.got)
        else:
            p.select().recv(nxt).to(self.Main_Got)


@register("acc-approvals", channels={
    "acc-approvals": ChannelPolicy.restricted(permission="slct_workflows.change_processinstance"),
})
@dataclass
class Approvals:
    def Main_Start(self, p: Process, input=None):
        p.select().recv("acc-approvals").to(self.Main_Done)

    def Main_Done(self, p: Process, value):
        p.finish(value)


@register("acc-parent")
@dataclass
class Parent:
    def Main_Start(self, p: Process, input=None):
        p.call("acc-approvals", None, id="acc-child").to(self.Main_Done)

    def Main_Done(self, p: Process, value):
        p.finish(value)


def _client(django_user_model, *codenames: str, groups: tuple[str, ...] = ()) -> APIClient:
    user = django_user_model.objects.create_user(username=f"u{django_user_model.objects.count()}", password="pw")
    app_perms = Permission.objects.filter(codename__in=codenames)
    user.user_permissions.add(*app_perms)
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    client.user = user
    return client


SENDER = ("view_channel", "add_externalsend", "change_channel")


def _send(client, channel: str, value, key: str):
    return client.post(f"/api/channels/{channel}/send/", {"value": value}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_made_channels_are_private_to_rest_and_close(runner, django_user_model):
    pid = runner.start("acc-maker")
    private = runner.state(pid)["private"]
    chan = Channel.objects.get(pk=private)
    assert (chan.owner, chan.policy) == (pid, SendPolicy.PRIVATE)
    client = _client(django_user_model, *SENDER)

    r = _send(client, private, "forged", "k1")
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.content
    assert "private" in r.json()["detail"]
    r = client.post(f"/api/channels/{private}/close/", format="json")
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert not ExternalSend.objects.exists()
    assert Channel.objects.get(pk=private).closed is False
    runner.assert_waits(pid, Main=[f"recv {private}"])

    # Trusted server code (a step's helper, a management command) still sends.
    services.send(private, "from code", "k-code")
    runner.run()
    assert runner.state(pid)["got"] == ["from code"]


def test_a_refused_sender_learns_nothing_from_a_used_key(runner, django_user_model):
    pid = runner.start("acc-maker")
    private = runner.state(pid)["private"]
    services.send(private, "first", "shared-key")
    r = _send(_client(django_user_model, *SENDER), private, "first", "shared-key")
    assert r.status_code == 403


def test_open_and_restricted_made_channels(runner, django_user_model):
    pid = runner.start("acc-maker")
    services.send(runner.state(pid)["private"], 1, "k-private")
    runner.run()
    state = runner.state(pid)
    plain = _client(django_user_model, *SENDER)
    r = _send(plain, state["opened"], 2, "k-open")
    assert r.status_code == 200 and r.json()["status"] == "delivered", r.content
    runner.run()

    r = _send(plain, state["restricted"], 3, "k-restricted-1")
    assert r.status_code == 403 and "group acc-approvers" in r.json()["detail"]
    member = _client(django_user_model, *SENDER, groups=("acc-approvers",))
    r = _send(member, state["restricted"], 3, "k-restricted-2")
    assert r.status_code == 200, r.content
    runner.run()
    runner.assert_finished(pid, [1, 2, 3])


def test_declared_policy_restricts_a_named_channel(runner, django_user_model):
    pid = runner.start("acc-approvals")
    without = _client(django_user_model, *SENDER)
    r = _send(without, "acc-approvals", "yes", "k-a")
    assert r.status_code == 403 and "slct_workflows.change_processinstance" in r.json()["detail"]
    assert not ExternalSend.objects.exists()
    runner.assert_running(pid)

    allowed = _client(django_user_model, *SENDER, "change_processinstance")
    r = _send(allowed, "acc-approvals", "yes", "k-b")
    assert r.status_code == 200, r.content
    runner.run()
    runner.assert_finished(pid, "yes")


def test_send_permission_is_needed_even_for_open_channels(runner, django_user_model):
    runner.start("acc-approvals")
    Channel.objects.create(name="acc-open")
    no_send = _client(django_user_model, "view_channel")
    r = _send(no_send, "acc-open", 1, "k")
    assert r.status_code == 403
    # The service rule holds without the REST permission class in front of it.
    with pytest.raises(Forbidden, match="add_externalsend"):
        services.send("acc-open", 1, "k2", sender=Sender.rest(no_send.user))


def test_child_result_channel_is_private(runner, django_user_model):
    pid = runner.start("acc-parent")
    result = Channel.objects.get(pk="result-acc-child")
    assert (result.owner, result.policy) == (pid, SendPolicy.PRIVATE)
    r = _send(_client(django_user_model, *SENDER), "result-acc-child", {"forged": True}, "k")
    assert r.status_code == 403
    runner.assert_running(pid)


def test_provenance_is_recorded_with_the_send_and_the_receiving_step(runner, django_user_model):
    pid = runner.start("acc-maker")
    services.send(runner.state(pid)["private"], 1, "k-private")
    runner.run()
    client = _client(django_user_model, *SENDER)
    # A forged "sender" inside the value is only data: provenance comes from the server.
    r = _send(client, runner.state(pid)["opened"], {"user": "someone-else"}, "k-open")
    assert r.status_code == 200
    runner.run()
    sender = ExternalSend.objects.get(pk="k-open").sender
    assert sender == {"via": "rest", "user": client.user.username, "user_id": client.user.pk}
    step = Event.objects.filter(process_id=pid, kind="step", value={"user": "someone-else"}).get()
    assert step.source == {"external": "k-open", "sender": sender}


def test_admin_sends_need_the_operator_permission_and_obey_the_policy(runner, django_user_model):
    pid = runner.start("acc-maker")
    private = runner.state(pid)["private"]
    operator = django_user_model.objects.create_user("operator", is_staff=True)
    operator.user_permissions.add(*Permission.objects.filter(codename__in=["view_channel", "operator_send"]))
    with pytest.raises(Forbidden, match="private"):
        services.send(private, 1, "k", sender=Sender.admin(operator))
    Channel.objects.create(name="acc-named")
    assert services.send("acc-named", 1, "k2", sender=Sender.admin(operator)).status == "waiting"
    assert ExternalSend.objects.get(pk="k2").sender["via"] == "admin"
    # A REST-style sender with only the operator permission is not a REST sender.
    with pytest.raises(Forbidden, match="add_externalsend"):
        services.send("acc-named", 1, "k3", sender=Sender.rest(operator))
    assert PendingCase.objects.filter(external_send_id="k3").count() == 0


def test_answers_only_go_into_private_reply_channels(runner):
    runner.start("acc-approvals")
    with pytest.raises(Forbidden, match="reply channel"):
        services.send("acc-approvals", True, "k", sender=Sender.answering("slack", slack_user="U1"))


def test_conflicting_declarations_are_refused():
    @dataclass
    class Other:
        def Main_Start(self, p, input=None):
            pass

    with pytest.raises(ValueError, match="acc-approvals"):
        registry.add("acc-other", Other, "", {"acc-approvals": ChannelPolicy.open()})
    assert registry.channel_policy("acc-approvals") == ChannelPolicy.restricted(
        permission="slct_workflows.change_processinstance"
    )


def test_a_precreated_result_channel_is_not_adopted(runner, django_user_model):
    # An outsider who guesses a child id makes its result channel first (open, theirs)...
    client = _client(django_user_model, *SENDER, "add_channel")
    assert client.post("/api/channels/", {"name": "result-acc-child", "capacity": 1}, format="json").status_code == 201
    pid = runner.start("acc-parent")
    # ...the call refuses the name instead of delivering the child's result into their channel.
    runner.assert_failed(pid, "already exists")
    assert Channel.objects.get(pk="result-acc-child").owner == ""


def test_channel_detail_shows_owner_and_effective_policy(runner, django_user_model):
    pid = runner.start("acc-maker")
    client = _client(django_user_model, "view_channel")
    made = client.get(f"/api/channels/{runner.state(pid)['private']}/").json()
    assert (made["owner"], made["policy"]) == (pid, "private")
    runner.start("acc-approvals")
    named = client.get("/api/channels/acc-approvals/").json()
    assert (named["owner"], named["policy"]) == ("", "restricted")  # the declaration, not the row


def test_admin_channel_page_shows_the_policy(runner, django_user_model, client):
    pid = runner.start("acc-maker")
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    private = runner.state(pid)["private"]
    page = client.get(f"/admin/slct_workflows/channel/{private}/change/").content.decode()
    assert "private: steps and the runtime only" in page and pid in page
    listing = client.get("/admin/slct_workflows/channel/?policy__exact=private").content.decode()
    assert private in listing and runner.state(pid)["opened"] not in listing
