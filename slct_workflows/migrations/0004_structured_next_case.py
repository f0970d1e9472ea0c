"""`Goroutine.next_case` (a display string parsed back in several places) becomes structured
fields: next_kind, next_channel, next_at. Existing rows are converted."""
from datetime import datetime

from django.db import migrations, models

KINDS = {"start", "go", "recv", "send", "timer", "default"}


def split_case(apps, schema_editor):
    Goroutine = apps.get_model("slct_workflows", "Goroutine")
    for g in Goroutine.objects.exclude(next_case="").only("id", "next_case").iterator(chunk_size=500):
        text = g.next_case.removesuffix(" (closed)")
        head, _, rest = text.partition(" ")
        kind = head if head in KINDS else ""
        channel, at = "", None
        if kind in ("recv", "send"):
            channel = rest
        elif kind == "timer":
            try:
                at = datetime.fromisoformat(rest)
            except ValueError:
                at = None
        Goroutine.objects.filter(pk=g.pk).update(next_kind=kind, next_channel=channel, next_at=at)


def join_case(apps, schema_editor):
    Goroutine = apps.get_model("slct_workflows", "Goroutine")
    for g in Goroutine.objects.exclude(next_kind="").iterator(chunk_size=500):
        if g.next_kind in ("recv", "send"):
            text = f"{g.next_kind} {g.next_channel}"
        elif g.next_kind == "timer":
            text = f"timer {g.next_at.isoformat() if g.next_at else '?'}"
        else:
            text = g.next_kind
        Goroutine.objects.filter(pk=g.pk).update(next_case=text + (" (closed)" if g.next_closed else ""))


class Migration(migrations.Migration):

    dependencies = [
        ("slct_workflows", "0003_access_runaway_provenance"),
    ]

    operations = [
        migrations.AddField(
            model_name="goroutine", name="next_kind",
            field=models.CharField(blank=True, choices=[("start", "Start"), ("go", "Go"), ("recv", "Recv"), ("send", "Send"), ("timer", "Timer"), ("default", "Default")], default="", max_length=16),
        ),
        migrations.AddField(
            model_name="goroutine", name="next_channel",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="goroutine", name="next_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(split_case, join_case),
        migrations.RemoveField(model_name="goroutine", name="next_case"),
        # Never written: buffered values are numbered from the buffer read under the channel lock.
        migrations.RemoveField(model_name="channel", name="next_seq"),
    ]
