import django.core.serializers.json
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("slct_workflows", "0005_retention"),
    ]

    operations = [
        migrations.CreateModel(
            name="Schedule",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=183, unique=True)),
                ("definition", models.CharField(max_length=200)),
                ("cron", models.CharField(blank=True, default="", max_length=200)),
                ("interval_seconds", models.PositiveIntegerField(blank=True, null=True)),
                ("timezone", models.CharField(default="UTC", max_length=64)),
                ("input", models.JSONField(blank=True, encoder=django.core.serializers.json.DjangoJSONEncoder,
                                           null=True)),
                ("enabled", models.BooleanField(default=True)),
                ("catchup", models.CharField(choices=[("skip", "Skip missed slots"),
                                                      ("latest", "Run the latest missed slot once")],
                                             default="skip", max_length=16)),
                ("declared_in_code", models.BooleanField(default=False)),
                ("last_slot", models.DateTimeField(blank=True, null=True)),
                ("last_process_id", models.CharField(blank=True, default="", max_length=200)),
                ("last_error", models.TextField(blank=True, default="")),
                ("next_run", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["name"],
                "indexes": [models.Index(condition=models.Q(("enabled", True)), fields=["next_run"],
                                         name="slct_schedule_due")],
            },
        ),
    ]
