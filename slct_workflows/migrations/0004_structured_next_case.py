from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("slct_workflows", "0003_access_runaway_provenance"),
    ]

    operations = []
