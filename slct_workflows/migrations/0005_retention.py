import django.db.models.functions.comparison
from django.db import migrations, models


class Migration(migrations.Migration):
    """The index retention's batch selection walks: finished processes, oldest first (finished_at,
    or updated_at for a failed process, which has none)."""

    dependencies = [
        ("slct_workflows", "0004_structured_next_case"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="processinstance",
            index=models.Index(
                django.db.models.functions.comparison.Coalesce("finished_at", "updated_at"),
                models.F("id"),
                condition=models.Q(("status__in", ["done", "cancelled", "failed"])),
                name="slct_process_retention",
            ),
        ),
    ]
