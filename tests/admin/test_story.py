"""Issue 16, the admin: the process list's columns and filter, parent <-> child links, Slack
question links, channels named by the state field that holds them, "blocked for", the index order,
no empty Django change log, a favicon and a "View site" that lead somewhere."""
from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest

from slct_workflows import clock
from slct_workflows.models import Channel, ProcessInstance

from . import story_workflows  # noqa: F401  (registers story-parent / story-child)

pytestmark = pytest.mark.django_db

ADMIN = "/admin/slct_workflows"
LIST = f"{ADMIN}/processinstance/"


def page(client, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code)
    return html.unescape(r.content.decode())


def words(content: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", content))


def url_of(pid: str) -> str:
    return f"{ADMIN}/processinstance/{pid}/change/"


@pytest.fixture
def family(run):
    parent = run.start("story-parent", {"go": "story-go"}, id="story-mum")
    child = ProcessInstance.objects.get(parent_id=parent)
    return parent, child.pk


def test_the_list_has_waits_for_blocked_error_parent_and_version_columns(run, family, admin_client_, settings):
    parent, child = family
    settings.SLCT_MAX_ATTEMPTS = 1
    from .workflows import FLAKY

    FLAKY["fail"] = True
    failing = run.start("admin-test-flaky")
    clock.advance(timedelta(minutes=3, seconds=10))
    content = page(admin_client_, LIST)
    for column in ("waits_col", "blocked_col", "error_col", "parent_col", "version_col"):
        assert f'class="sortable column-{column}' in content or f'class="column-{column}' in content, column
    text = words(content)
    # The parent waits on its child: named and linked, not result-<uuid>.
    row = re.search(r'<tr[^>]*>(?:(?!</tr>).)*value="story-mum"(?:(?!</tr>).)*</tr>', content, re.S).group(0)
    assert f'href="{url_of(child)}"' in row and "child story-child" in row
    assert "result-" not in words(row)
    assert ">3<" in row  # version
    assert "3 min" in words(row)  # blocked since, in words
    # The child: its parent is a link; its make_chan channel is named by the state field.
    crow = re.search(rf'<tr[^>]*>(?:(?!</tr>).)*value="{child}"(?:(?!</tr>).)*</tr>', content, re.S).group(0)
    assert f'href="{url_of(parent)}"' in crow
    assert "recv story-go" in words(crow) and "recv reply_to" in words(crow)
    # The failed one: the error's first line, not the traceback.
    frow = re.search(rf'<tr[^>]*>(?:(?!</tr>).)*value="{failing}"(?:(?!</tr>).)*</tr>', content, re.S).group(0)
    assert "Main_Start: RuntimeError: boom" in frow
    assert "Traceback" not in frow
    assert "boom" in text


def test_the_list_filters_by_what_a_process_waits_for(run, family, admin_client_):
    parent, child = family
    timer = run.start("reminder", {"every": 3600})
    expense = run.start("expense", {"amount": 50})

    def ids(kind):
        content = page(admin_client_, f"{LIST}?waits_for={kind}")
        return {p for p in (parent, child, timer, expense) if f'value="{p}"' in content}

    assert ids("child") == {parent}
    assert ids("question") == {expense}
    assert ids("timer") == {timer, expense}
    assert ids("channel") == {child, timer}
    assert "a Slack question" in page(admin_client_, LIST)


def test_parent_and_child_pages_link_each_other(family, admin_client_):
    parent, child = family
    mum = page(admin_client_, url_of(parent))
    assert 'id="slct-family"' in mum
    assert f'<a href="{url_of(child)}" class="slct-child-link">story-child {child}</a>' in mum
    # What Main waits for names the child and links it.
    waits = re.search(r'<td class="slct-waits">(.*?)</td>', mum, re.S).group(1)
    assert f'href="{url_of(child)}"' in waits
    assert re.search(r"Main waits for child process story-child \S+ to finish, then Main_Child", words(waits))
    assert "blocked for" in waits
    kid = page(admin_client_, url_of(child))
    assert f'<a href="{url_of(parent)}" class="slct-parent-link">{parent}</a>' in kid
    assert "its goroutine Main waits for this process to finish" in words(kid)


def test_a_make_chan_channel_is_labelled_by_its_state_field(family, admin_client_):
    _, child = family
    reply = ProcessInstance.objects.get(pk=child).state["reply_to"]
    assert reply.startswith("chan-")
    kid = page(admin_client_, url_of(child))
    side = re.search(r'data-goroutine="Side">(.*?)</tr>', kid, re.S).group(1)
    assert "Side waits to receive on state.reply_to" in words(side)
    assert f'href="{ADMIN}/channel/{reply}/change/"' in side


def test_a_slack_question_is_named_and_linked(run, admin_client_):
    from slack_integration.models import SlackMessage

    pid = run.start("expense", {"amount": 50, "channel": "#finance"})
    msg = SlackMessage.objects.get(process_id=pid, kind="approve")
    content = page(admin_client_, url_of(pid))
    waits = re.search(r'data-goroutine="Main">(.*?)</tr>', content, re.S).group(1)
    link = f"/admin/slack_integration/slackmessage/{msg.pk}/change/"
    assert f'href="{link}"' in waits
    assert "Main waits for an answer to approval “Approve expense of 50?” in #finance" in words(waits)
    assert msg.reply_channel not in words(waits)
    listing = page(admin_client_, LIST)
    assert f'href="{link}"' in listing and "approval “Approve expense of 50?” in #finance" in listing
    # The message's own page is reachable and read-only, without Django's change log.
    r = admin_client_.get(link)
    assert r.status_code == 200 and "/history/" not in r.content.decode()


def test_blocked_for_reads_in_minutes(run, admin_client_):
    pid = run.start("reminder", {"every": 3600})
    clock.advance(timedelta(minutes=3, seconds=5))
    assert "blocked for 3 min" in words(page(admin_client_, url_of(pid)))


def test_no_history_link_and_no_grey_close_button(run, admin_client_):
    pid = run.start("reminder", {"every": 3600})
    from slct_workflows.models import Event, Goroutine

    urls = [url_of(pid), f"{ADMIN}/channel/answers/change/",
            f"{ADMIN}/goroutine/{Goroutine.objects.filter(process_id=pid).first().pk}/change/",
            f"{ADMIN}/event/{Event.objects.filter(process_id=pid).first().pk}/change/"]
    for url in urls:
        content = page(admin_client_, url)
        assert "/history/" not in content, url
        assert 'class="closelink"' not in content, url
    # The change log URL leads back to the object rather than to an empty page.
    r = admin_client_.get(f"{ADMIN}/processinstance/{pid}/history/")
    assert r.status_code == 302 and r["Location"] == url_of(pid)


def test_a_closed_channel_says_closed_not_a_green_tick(run, admin_client_):
    run.start("reminder", {"every": 3600})
    Channel.objects.filter(pk="answers").update(closed=True)
    listing = page(admin_client_, f"{ADMIN}/channel/")
    assert "icon-yes.svg" not in listing and "icon-no.svg" not in listing
    row = re.search(r'<tr[^>]*>(?:(?!</tr>).)*channel/answers/(?:(?!</tr>).)*</tr>', listing, re.S).group(0)
    assert ">closed<" in row
    assert ">closed<" in page(admin_client_, f"{ADMIN}/channel/answers/change/")


def test_the_index_puts_processes_first_and_engine_internals_below(admin_client_):
    content = page(admin_client_, "/admin/")
    order = [m.group(1) for m in re.finditer(r'<caption>\s*<a [^>]*class="section"[^>]*>([^<]+)</a>', content)]
    assert order[0] == "SLCT workflows" and order.count("SLCT workflows") == 1
    assert "SLCT engine internals" in order and order.index("SLCT engine internals") > 0
    assert "Slack integration" in order and order.index("Slack integration") < order.index("SLCT engine internals")
    main = content.index("SLCT workflows</a>")
    internals = content.index("SLCT engine internals</a>")
    dash, procs, chans = (content.index(x) for x in ('id="slct-dashboard-link"', ">Processes<", ">Channels<"))
    assert main < dash < procs < chans < internals
    assert internals < content.index(">Goroutines<") and internals < content.index(">Events<")


def test_the_index_without_process_permission_has_no_dashboard(make_client):
    content = page(make_client("view_channel"), "/admin/")
    assert 'id="slct-dashboard-link"' not in content and ">Channels<" in content


def test_favicon_and_view_site(admin_client_, client):
    r = client.get("/favicon.ico")
    assert r.status_code in (200, 204)
    assert r["Content-Type"].startswith("image/")
    content = page(admin_client_, "/admin/")
    site = re.search(r'<a href="([^"]+)">View site</a>', content).group(1)
    assert admin_client_.get(site).status_code == 200
    assert client.get("/").status_code in (301, 302)


def test_a_running_process_page_refreshes_itself_a_finished_one_does_not(run, admin_client_):
    pid = run.start("reminder", {"every": 3600})
    content = page(admin_client_, url_of(pid))
    assert 'data-slct-live="1"' in content and "X-Slct-Refresh" in content
    assert 'class="slct-countdown" data-deadline=' in content
    run.send("answers", "yes")
    assert 'data-slct-live="0"' in page(admin_client_, url_of(pid))


def test_the_slack_messages_list_gives_its_text_room(run, admin_client_):
    run.start("expense", {"amount": 50})
    content = page(admin_client_, "/admin/slack_integration/slackmessage/")
    assert "td.field-short_text { min-width" in content and 'id="nav-sidebar"' not in content


def test_channels_involved_and_the_timeline_name_what_a_channel_is(family, admin_client_):
    parent, child = family
    mum = page(admin_client_, url_of(parent))
    involved = re.search(r'<p id="slct-channels">(.*?)</p>', mum, re.S).group(1)
    assert "(result of child process story-child" in words(involved)
    svg = re.search(r'<svg xmlns="http://www.w3.org/2000/svg" class="slct-timeline".*?</svg>', mum, re.S).group(0)
    assert "Main waits for child process story-child" in svg
    kid = page(admin_client_, url_of(child))
    involved = words(re.search(r'<p id="slct-channels">(.*?)</p>', kid, re.S).group(1))
    assert "(state.reply_to)" in involved and "(the result for its parent)" in involved


def test_the_dashboard_refreshes_itself(admin_client_):
    content = page(admin_client_, f"{ADMIN}/processinstance/dashboard/")
    assert 'data-slct-live="1"' in content and "X-Slct-Refresh" in content


def test_the_goroutine_page_names_the_child(family, admin_client_):
    from slct_workflows.models import Goroutine

    parent, child = family
    g = Goroutine.objects.get(process_id=parent, name="Main")
    content = page(admin_client_, f"{ADMIN}/goroutine/{g.pk}/change/")
    assert f'href="{url_of(child)}"' in content and "to finish, then Main_Child" in words(content)


def test_the_app_index_page_lists_both_groups(admin_client_):
    content = page(admin_client_, "/admin/slct_workflows/")
    assert "SLCT workflows" in content and "SLCT engine internals" in content
    assert content.index(">Processes<") < content.index(">Goroutines<")


def test_a_channel_page_says_what_the_channel_is(run, family, admin_client_):
    from slack_integration.models import SlackMessage

    parent, child = family
    result = ProcessInstance.objects.get(pk=child).result_channel
    content = page(admin_client_, f"{ADMIN}/channel/{result}/change/")
    said = words(re.search(r'<p id="slct-chan-role".*?</p>', content, re.S).group(0))
    assert "This channel is the result of child process story-child" in said and f"by its parent {parent}" in said
    reply = ProcessInstance.objects.get(pk=child).state["reply_to"]
    assert "state field “reply_to”" in words(page(admin_client_, f"{ADMIN}/channel/{reply}/change/"))
    pid = run.start("expense", {"amount": 5})
    msg = SlackMessage.objects.get(process_id=pid, kind="approve")
    content = page(admin_client_, f"{ADMIN}/channel/{msg.reply_channel}/change/")
    assert f'href="/admin/slack_integration/slackmessage/{msg.pk}/change/"' in content
    assert 'id="slct-chan-role"' not in page(admin_client_, f"{ADMIN}/channel/story-go/change/")
