"""Reviewers in the admin: their queue, a page per request with Approve / Reject behind a
confirmation page, and bulk decisions that ask the service about each request."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from config.errors import DomainError
from registry import selectors as registry_selectors
from registry.admin import ServiceAdminMixin
from registry.models import ModelAlias, ModelVersion
from workflows import policies, selectors, services
from workflows.api.views import wait_until_applied
from workflows.choices import Decision, RequestStatus
from workflows.models import Policy, TransitionRequest

HISTORY_ROWS = 200  # the request page shows the latest events; the Event admin has them all
REQUEST_FIELDS = (
    "model_link",
    "version_link",
    "target",
    "from_stage",
    "status_text",
    "requested_by",
    "comment",
    "created_at",
    "expires_at",
    "decided_at",
    "applied_at",
)
VERSION_FIELDS = (
    "version_source",
    "version_run",
    "version_description",
    "version_tags",
    "version_registered_by",
    "version_stage",
)


class QueueFilter(admin.SimpleListFilter):
    """The changelist opens on the reviewer's queue; their own requests and all are a click away."""

    title = "queue"
    parameter_name = "queue"
    MINE = "mine"
    ALL = "all"

    def __init__(self, request: HttpRequest, params: Any, model: Any, model_admin: Any) -> None:
        self.model_admin = model_admin
        super().__init__(request, params, model, model_admin)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(self.MINE, "My requests"), (self.ALL, "All I can see")]

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Waiting for my review",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == self.MINE:
            return queryset.filter(requester=request.user)
        if self.value() == self.ALL:
            return queryset
        actor = self.model_admin.actor(request)
        waiting = [found.pk for found in selectors.requests_waiting_for(actor=actor)]
        return queryset.filter(pk__in=waiting)


class DecisionForm(forms.Form):
    comment = forms.CharField(
        required=False,
        max_length=services.COMMENT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="Optional; kept with your decision and in the history.",
    )


DECISIONS: dict[Decision, tuple[str, str, Callable[..., TransitionRequest]]] = {
    Decision.APPROVE: ("approve", "Approve", services.request_approve),
    Decision.REJECT: ("reject", "Reject", services.request_reject),
}


def _link(url: str) -> str | SafeString:
    """A clickable link for http(s) URLs only; anything else (javascript:, file:) as text."""
    if urlsplit(url).scheme in ("http", "https"):
        return format_html('<a href="{}" rel="noopener noreferrer">{}</a>', url, url)
    return url or "-"


def _version_url(version: ModelVersion) -> str:
    return reverse("admin:registry_modelversion_change", args=[version.pk])


def _outcome(request: TransitionRequest) -> tuple[int, str]:
    """The message level and text after a decision, once the apply task had its chance."""
    label = f"#{request.pk} ({request.model.name} v{request.version.version} → {request.target})"
    if request.status == RequestStatus.REJECTED:
        return messages.SUCCESS, f"Rejected request {label}."
    if request.status == RequestStatus.PENDING:
        missing = (
            request.required_approvals - request.reviews.filter(decision=Decision.APPROVE).count()
        )
        return messages.SUCCESS, (
            f"Approval recorded on request {label}; {missing} more approval(s) needed."
        )
    if request.status == RequestStatus.APPLIED:
        return messages.SUCCESS, f"Approved request {label}: applied."
    if request.status == RequestStatus.FAILED:
        return messages.ERROR, (
            f"Approved request {label}, but applying it failed: {request.status_reason}"
        )
    return messages.WARNING, (
        f"Approved request {label}; it is being applied (reload to see it applied)."
    )


@admin.register(TransitionRequest)
class TransitionRequestAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """Read-only request pages; decisions go through a confirmation page or the bulk actions."""

    list_display = [
        "number",
        "model",
        "version_number",
        "target",
        "from_stage",
        "status_code",
        "approvals",
        "requested_by",
        "created_at",
        "expires_at",
    ]
    list_display_links = ["number"]
    list_filter = [QueueFilter, "status", "target"]
    search_fields = ["model__name", "requester_name", "target"]
    actions = ["approve_selected", "reject_selected"]
    fieldsets = [
        ("Request", {"fields": REQUEST_FIELDS}),
        ("Version", {"fields": VERSION_FIELDS}),
        ("In the target now", {"fields": ["target_now"]}),
        ("Policy", {"fields": ["policy_rules", "approvals_progress"]}),
    ]
    readonly_fields = [*REQUEST_FIELDS, *VERSION_FIELDS, "target_now", "policy_rules"]
    readonly_fields += ["approvals_progress"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.request_list(actor=self.actor(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # requests come from the API and the MLflow / Databricks clients

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a request is decided, never edited

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the requester cancels; the row stays for the history

    # --- columns and fields -----------------------------------------------------------------

    @admin.display(description="Request", ordering="pk")
    def number(self, obj: TransitionRequest) -> str:
        return f"#{obj.pk}"

    @admin.display(description="Version", ordering="version__version")
    def version_number(self, obj: TransitionRequest) -> int:
        return obj.version.version

    @admin.display(description="Status", ordering="status")
    def status_code(self, obj: TransitionRequest) -> str:
        return obj.status  # the code, as the API, the history and the messages say it

    @admin.display(description="Approvals")
    def approvals(self, obj: TransitionRequest) -> str:
        return f"{len(selectors.approvals_of(obj))} of {obj.required_approvals}"

    @admin.display(description="Model")
    def model_link(self, obj: TransitionRequest) -> str:
        url = reverse("admin:registry_registeredmodel_change", args=[obj.model_id])
        return format_html('<a href="{}">{}</a>', url, obj.model.name)

    @admin.display(description="Version")
    def version_link(self, obj: TransitionRequest) -> str:
        if obj.version.deleted_at is not None:
            return f"{obj.version.version} (deleted)"
        return format_html('<a href="{}">{}</a>', _version_url(obj.version), obj.version.version)

    @admin.display(description="Status")
    def status_text(self, obj: TransitionRequest) -> str:
        if obj.status_reason:
            return f"{obj.status}: {obj.status_reason}"
        return obj.status

    @admin.display(description="Requested by", ordering="requester_name")
    def requested_by(self, obj: TransitionRequest) -> str:
        return obj.requester_name

    @admin.display(description="Source")
    def version_source(self, obj: TransitionRequest) -> str:
        return obj.version.source or "-"

    @admin.display(description="Run")
    def version_run(self, obj: TransitionRequest) -> str:
        run_id, link = obj.version.run_id, obj.version.run_link
        if not link:
            return run_id or "-"
        return format_html("{} {}", run_id, _link(link)) if run_id else str(_link(link))

    @admin.display(description="Description")
    def version_description(self, obj: TransitionRequest) -> str:
        return obj.version.description or "-"

    @admin.display(description="Tags")
    def version_tags(self, obj: TransitionRequest) -> str:
        tags = obj.version.tags.order_by("key").values_list("key", "value")
        return format_html_join(", ", "<code>{}={}</code>", tags) or "-"

    @admin.display(description="Registered by")
    def version_registered_by(self, obj: TransitionRequest) -> str:
        who = obj.version.created_by.get_username() if obj.version.created_by else "(unknown)"
        when = timezone.localtime(obj.version.created_at).strftime("%Y-%m-%d %H:%M %Z")
        return f"{who}, {when}"

    @admin.display(description="Stage now")
    def version_stage(self, obj: TransitionRequest) -> str:
        aliases = ", ".join(alias.alias for alias in obj.version.aliases.order_by("alias"))
        return f"{obj.version.stage}" + (f" (aliases: {aliases})" if aliases else "")

    @admin.display(description="Now")
    def target_now(self, obj: TransitionRequest) -> str:
        lines = []
        if obj.is_alias_target:
            lines.append(self._alias_now(obj, obj.target.removeprefix(policies.ALIAS_PREFIX)))
        else:
            current = list(
                ModelVersion.objects.filter(
                    model=obj.model, stage=obj.target, deleted_at__isnull=True
                )
                .select_related("created_by")
                .order_by("-version")
            )
            if not current:
                lines.append(format_html("No version of {} is in {}.", obj.model.name, obj.target))
            for version in current:
                lines.append(
                    format_html(
                        '<a href="{}">Version {}</a> is in {}: {} (registered by {})',
                        _version_url(version),
                        version.version,
                        obj.target,
                        version.source or "no source",
                        version.created_by.get_username() if version.created_by else "(unknown)",
                    )
                )
            if obj.move_alias:
                lines.append(self._alias_now(obj, obj.move_alias))
        return format_html_join("", "<div>{}</div>", ((line,) for line in lines))

    def _alias_now(self, obj: TransitionRequest, alias: str) -> str:
        found = (
            ModelAlias.objects.filter(model=obj.model, alias=alias)
            .select_related("version")
            .first()
        )
        if found is None:
            return format_html("Alias <code>{}</code> points at no version yet.", alias)
        return format_html(
            'Alias <code>{}</code> points at <a href="{}">version {}</a>.',
            alias,
            _version_url(found.version),
            found.version.version,
        )

    @admin.display(description="Rules")
    def policy_rules(self, obj: TransitionRequest) -> str:
        if obj.policy_id_at_creation is None:
            origin = "No policy: one holder of the level decides, the requester included."
        elif Policy.objects.filter(pk=obj.policy_id_at_creation).exists():
            url = reverse("admin:workflows_policy_change", args=[obj.policy_id_at_creation])
            origin = format_html(
                'The rules of <a href="{}">policy #{}</a> when the request was made.',
                url,
                obj.policy_id_at_creation,
            )
        else:
            origin = f"The rules of policy #{obj.policy_id_at_creation} (since deleted)."
        have = dict(obj.version.tags.values_list("key", "value"))
        tags = format_html_join(
            ", ",
            "<code>{}={}</code> ({})",
            (
                (key, value, "present" if have.get(key) == value else "MISSING")
                for key, value in obj.required_tags.items()
            ),
        )
        rules = [
            ("Approvals needed", obj.required_approvals),
            ("Approver level", obj.approver_level),
            (
                "Requester or version creator may approve",
                "yes" if obj.allow_self_approval else "no",
            ),
            ("Required tags", tags or "none"),
            ("Archive the versions in the stage", "yes" if obj.archive_existing_versions else "no"),
            ("Alias moved with it", obj.move_alias or "none"),
        ]
        items = format_html_join("", "<li>{}: {}</li>", rules)
        return format_html("<div>{}</div><ul>{}</ul>", origin, items)

    @admin.display(description="Approvals")
    def approvals_progress(self, obj: TransitionRequest) -> str:
        approved = len(selectors.approvals_of(obj))
        missing = max(0, obj.required_approvals - approved)
        return f"{approved} of {obj.required_approvals}; {missing} still missing"

    # --- the request page ---------------------------------------------------------------------

    def decision_refusal(
        self, request: HttpRequest, obj: TransitionRequest, decision: Decision
    ) -> str | None:
        """Why this staff member may not decide now (as the service would say), or None."""
        if obj.status != RequestStatus.PENDING:
            return f"Request #{obj.pk} is {obj.status}, not PENDING."
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return f"Request #{obj.pk} has expired."
        refusal = services.reviewer_refusal(obj, self.actor(request), decision)
        if refusal is not None:
            return refusal.message
        if decision == Decision.APPROVE:
            have = dict(obj.version.tags.values_list("key", "value"))
            missing = [f"{k}={v}" for k, v in obj.required_tags.items() if have.get(k) != v]
            if missing:
                return (
                    f"Version {obj.version.version} must carry {', '.join(missing)} before it "
                    "can be approved."
                )
        return None

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if obj is not None and self.has_view_permission(request, obj):
            extra.update(self._page_context(request, obj))
        return super().change_view(request, object_id, form_url, extra)

    def _page_context(self, request: HttpRequest, obj: TransitionRequest) -> dict[str, Any]:
        actor = self.actor(request)
        history = registry_selectors.event_list(
            viewer=actor, model=obj.model.name, version=obj.version.version
        ).order_by("-seq")[:HISTORY_ROWS]
        context: dict[str, Any] = {
            "reviews": list(obj.reviews.all()),
            "version_comments": list(selectors.comment_list(version=obj.version)),
            "history": list(reversed(history)),
            "history_url": reverse("admin:registry_event_changelist")
            + f"?model_id__exact={obj.model_id}&version__exact={obj.version.version}",
            "is_pending": obj.status == RequestStatus.PENDING,
        }
        for decision, (slug, _, _) in DECISIONS.items():
            context[f"{slug}_url"] = reverse(
                f"admin:workflows_transitionrequest_{slug}", args=[obj.pk]
            )
            context[f"{slug}_refusal"] = self.decision_refusal(request, obj, decision)
        return context

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path(
                f"<path:object_id>/{slug}/",
                view(self.decide_view),
                {"decision": decision},
                name=f"workflows_transitionrequest_{slug}",
            )
            for decision, (slug, _, _) in DECISIONS.items()
        ] + super().get_urls()

    def decide_view(self, request: HttpRequest, object_id: str, decision: Decision) -> HttpResponse:
        """GET: a confirmation page (changes nothing). POST (with CSRF): the decision."""
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_view_permission(request, obj):
            # The admin's own answer for an object it does not have (as its change view gives).
            return self._get_obj_does_not_exist_redirect(  # type: ignore[attr-defined]
                request, self.opts, object_id
            )
        slug, label, decide = DECISIONS[decision]
        change_url = reverse("admin:workflows_transitionrequest_change", args=[obj.pk])
        form = DecisionForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                decided = decide(
                    request=obj, actor=self.actor(request), comment=form.cleaned_data["comment"]
                )
            except DomainError as exc:
                self.message_user(request, f"{label} refused: {exc.message}", messages.ERROR)
                return HttpResponseRedirect(change_url)
            level, text = _outcome(wait_until_applied(decided))
            self.message_user(request, text, level)
            return HttpResponseRedirect(change_url)
        approved = len(selectors.approvals_of(obj))
        context = {
            **self.admin_site.each_context(request),
            "title": f"{label} request #{obj.pk}?",
            "opts": self.opts,
            "original": obj,
            "form": form,
            "slug": slug,
            "label": label,
            "change_url": change_url,
            "refusal": self.decision_refusal(request, obj, decision),
            "approved": approved,
            "reaches_quorum": decision == Decision.APPROVE
            and approved + 1 >= obj.required_approvals,
            "missing_after": max(0, obj.required_approvals - approved - 1),
            "target_now": self.target_now(obj),
            "version_tags": self.version_tags(obj),
        }
        return TemplateResponse(request, "admin/workflows/transitionrequest/decide.html", context)

    # --- bulk decisions -----------------------------------------------------------------------

    @admin.action(description="Approve selected requests")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide_many(request, queryset, Decision.APPROVE)

    @admin.action(description="Reject selected requests")
    def reject_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide_many(request, queryset, Decision.REJECT)

    def _decide_many(self, request: HttpRequest, queryset: QuerySet, decision: Decision) -> None:
        """Ask the service about every selected request; report each refusal with its reason."""
        if request.POST.get("select_across") != "1":
            # The ids ticked, among all the requests this staff member may see: a request that
            # left the queue since the page was drawn is still checked (and its refusal told).
            ticked = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            queryset = self.get_queryset(request).filter(pk__in=ticked)
        _, label, decide = DECISIONS[decision]
        decided, refused = [], []
        for obj in queryset.order_by("pk"):
            try:
                decided.append(decide(request=obj, actor=self.actor(request), comment=""))
            except DomainError as exc:
                refused.append((obj, exc.message))
        deadline = time.monotonic() + settings.MODELGATE_APPROVE_WAIT_SECONDS
        for obj in decided:
            while obj.status == RequestStatus.APPROVED and time.monotonic() < deadline:
                time.sleep(0.05)
                obj.refresh_from_db(fields=["status", "status_reason", "applied_at"])
            level, text = _outcome(obj)
            self.message_user(request, text, level)
        for obj, reason in refused:
            self.message_user(request, f"{label} refused for {obj}: {reason}", messages.ERROR)
        self.message_user(
            request,
            f"{label}: {len(decided)} done, {len(refused)} refused.",
            messages.WARNING if refused else messages.INFO,
        )
