"""Editing a process's state: a deliberate operator action (a form of its own, confirmed, and
refused if the process moved on since the operator looked), never a stray field of the change form.

The view is thin: it parses the JSON text and hands the object to services.set_state, which checks
it against the definition (field types, REST's nesting and size limits) and merges it into the
current state (fields left out keep their values). A refused edit shows why and changes nothing."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from slct_workflows import services, state_schema
from slct_workflows.admin_views.common import PERM_OPERATE_PROCESS, pretty_json, process_url, require, service_error
from slct_workflows.errors import InvalidInput, SlctError
from slct_workflows.models import ProcessInstance


class StateForm(forms.Form):
    state = forms.CharField(
        label="State (JSON object; fields left out keep their current values)", strip=False,
        widget=forms.Textarea(attrs={"rows": 16, "cols": 80, "class": "vLargeTextField", "spellcheck": "false"}),
    )
    reason = forms.CharField(label="Why (kept in the history)", max_length=500)
    step_count = forms.IntegerField(widget=forms.HiddenInput, min_value=0)
    confirm = forms.BooleanField(
        label="I understand the fields given replace those the process's next step will see",
        required=True,
    )

    def clean_state(self) -> dict:
        raw = self.cleaned_data["state"]
        try:
            value = state_schema.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
        if not isinstance(value, dict):
            raise forms.ValidationError("The state is a JSON object of the definition's fields.")
        return value


def state_view(model_admin, request, object_id: str) -> HttpResponse:
    require(request, PERM_OPERATE_PROCESS)
    proc = get_object_or_404(ProcessInstance, pk=unquote(object_id))
    if request.method == "POST":
        form = StateForm(request.POST)
        if form.is_valid():
            try:
                services.set_state(
                    proc.pk, form.cleaned_data["state"], expected_step_count=form.cleaned_data["step_count"],
                    reason=form.cleaned_data["reason"],
                )
            except InvalidInput as exc:  # the edit does not fit the definition: said at the field
                form.add_error("state", f"Not saved: {exc}")
            except SlctError as exc:
                service_error(request, exc, f"edit the state of process {proc.pk}")
            else:
                messages.success(request, f"The state of process {proc.pk} was replaced (recorded in its history).")
                return redirect(process_url(proc.pk))
    else:
        form = StateForm(initial={"state": pretty_json(proc.state), "step_count": proc.step_count})
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Edit the state of process {proc.pk}",
        "opts": model_admin.model._meta,
        "object": proc,
        "form": form,
        "back_url": process_url(proc.pk),
        "state_url": process_url(proc.pk, "state"),
    }
    return TemplateResponse(request, "admin/slct_workflows/processinstance/state.html", context,
                            status=400 if request.method == "POST" else 200)
