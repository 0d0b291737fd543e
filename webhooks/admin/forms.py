"""Forms of the subscription screens. Each asks the service itself (in a transaction rolled
back at once) whether it would accept the input, so a refusal is a form error, never a 500."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django import forms
from django.db import transaction
from django.utils import timezone

from accounts.actors import Actor
from config.errors import DomainError, NotFound, PermissionDenied
from registry import selectors as registry_selectors
from registry.models import RegisteredModel
from registry.permissions import Level
from webhooks import payloads, services
from webhooks.choices import Flavor
from webhooks.models import ALL_EVENTS, Subscription

# The subscription's own fields, as the services name them.
SERVICE_FIELDS = ("name", "url", "description", "status", "verify_tls")
HEADER_HELP = (
    "One “Name: value” per line, e.g. “Authorization: Bearer …”. Values are stored encrypted "
    "and never shown again."
)


class _DryRun(Exception):
    """Raised to roll back a service call made only to learn whether it would be refused."""


def event_choices(flavor: str) -> list[tuple[str, str]]:
    """The events a subscription of this flavor may name, in its own vocabulary."""
    if flavor == Flavor.MLFLOW:
        return [(name, name) for name in sorted(payloads.MLFLOW_EVENT_NAMES)]
    if flavor == Flavor.DATABRICKS:
        return [(name, name) for name in payloads.DATABRICKS_EVENT_NAMES]
    native = [(name, name) for name in sorted(services.native_event_types())]
    return [(ALL_EVENTS, "All events"), *native]


def headers_parse(text: str) -> dict[str, str]:
    """`Name: value` lines as a dict; blank lines are skipped, anything else is an error."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name:
            raise forms.ValidationError(f"Line {number} is not “Name: value”.")
        if name.lower() in {known.lower() for known in headers}:
            raise forms.ValidationError(f"The header “{name}” is given twice.")
        headers[name] = value.strip()
    return headers


class SubscriptionForm(forms.ModelForm):
    """Adds (subscription_create) and changes (subscription_update) a subscription."""

    events = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        help_text="“All events” includes the ones added to the registry later.",
    )
    model = forms.CharField(
        required=False,
        max_length=256,
        help_text="The name of the registered model it hears about; empty: every model "
        "(registry-wide, superusers only). It cannot be changed later.",
    )
    headers_text = forms.CharField(
        label="Extra headers",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=HEADER_HELP,
    )
    clear_headers = forms.BooleanField(label="Remove the extra headers", required=False)

    class Meta:
        model = Subscription
        fields = ["name", "url", "description", "status", "verify_tls"]
        widgets = {
            "url": forms.TextInput(attrs={"class": "vURLField"}),
            "description": forms.Textarea(attrs={"rows": 3, "cols": 60}),
        }
        labels = {"url": "URL", "verify_tls": "Verify TLS"}
        help_texts = {
            "url": "Where the events are POSTed: a public http(s) address.",
            "status": "Test mode: only the test events are sent.",
            "verify_tls": "Untick only for a receiver with a self-signed certificate.",
        }

    # Set by SubscriptionAdmin.get_form: who is saving, so clean() can ask the service.
    actor: Actor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        adding = self.instance._state.adding
        cast(forms.ChoiceField, self.fields["events"]).choices = event_choices(
            Flavor.NATIVE if adding else self.instance.flavor
        )
        if adding:
            self.fields.pop("clear_headers")
        else:
            self.fields.pop("model")
            self.fields["headers_text"].label = "Replace the extra headers"
            self.fields["headers_text"].help_text = (
                f"{HEADER_HELP} Empty: the headers stay as they are; lines entered here replace "
                "them all."
            )

    def clean_model(self) -> RegisteredModel | None:
        name = self.cleaned_data.get("model", "").strip()
        if not name:
            return None
        try:
            return registry_selectors.model_get(actor=self.actor, name=name, level=Level.CAN_MANAGE)
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_headers_text(self) -> dict[str, str] | None:
        text = self.cleaned_data.get("headers_text") or ""
        return headers_parse(text) if text.strip() else None

    def service_values(self) -> dict[str, Any]:
        """What to hand the service: every field on add, the changed ones on change."""
        data = self.cleaned_data
        if self.instance._state.adding:
            values = {name: data.get(name) for name in SERVICE_FIELDS}
            values.update(events=data.get("events"), model=data.get("model"))
            values["headers"] = data.get("headers_text") or {}
            return values
        names = [name for name in (*SERVICE_FIELDS, "events") if name in self.changed_data]
        values = {name: data.get(name) for name in names}
        if data.get("clear_headers"):
            values["headers"] = {}
        elif data.get("headers_text") is not None:
            values["headers"] = data["headers_text"]
        return values

    def save_through_service(self) -> services.Created:
        values = self.service_values()
        if self.instance._state.adding:
            return services.subscription_create(actor=self.actor, **values)
        return services.subscription_update(subscription=self.instance, actor=self.actor, **values)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors or (not self.instance._state.adding and not self.service_values()):
            return cleaned
        try:
            with transaction.atomic():
                self.save_through_service()
                raise _DryRun
        except _DryRun:
            pass
        except DomainError as exc:
            self.add_service_error(exc)
        return cleaned

    def add_service_error(self, exc: DomainError) -> None:
        placed = False
        for field, errors in exc.fields.items():
            field = "headers_text" if field == "headers" else field
            if field in self.fields:
                self.add_error(field, errors)
                placed = True
        if placed:
            return
        if "model" in self.fields and isinstance(exc, PermissionDenied | NotFound):
            self.add_error("model", exc.message)  # on add, a refusal is about the scope
        else:
            self.add_error(None, exc.message)


class ToolForm(forms.Form):
    """The form of one action on a subscription's page (rotate, send a test, replay)."""

    def __init__(self, *args: Any, subscription: Subscription, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subscription = subscription


class RotateForm(ToolForm):
    """Nothing to ask: the POST itself is the confirmation."""


class SendTestForm(ToolForm):
    event = forms.ChoiceField(
        required=False,
        help_text="The event the test imitates; its body says it is a test.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = event_choices(self.subscription.flavor)
        cast(forms.ChoiceField, self.fields["event"]).choices = [
            ("", "(the first event it subscribes to)"),
            *[(value, label) for value, label in choices if value != ALL_EVENTS],
        ]


class ReplayForm(ToolForm):
    since = forms.DateTimeField(
        help_text="UTC, e.g. 2025-03-01 08:00. Failed and cancelled deliveries created since "
        "then are sent again, each with its own webhook-id and body unchanged.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        yesterday = timezone.now() - timedelta(days=1)
        self.fields["since"].initial = yesterday.strftime("%Y-%m-%d %H:%M")
