from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("slct_workflows", "0005_retention"),
    ]

    operations = []
