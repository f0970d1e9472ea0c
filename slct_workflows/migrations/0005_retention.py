from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("slct_workflows", "0004_structured_next_case"),
    ]

    operations = []
