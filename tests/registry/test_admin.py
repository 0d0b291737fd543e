"""Admin smoke: the pages load, and every change made there goes through the services."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from registry import services
from registry.choices import Stage
from registry.models import Event, ModelAlias, ModelVersion, RegisteredModel
from tests.factories import make_model, make_version

pytestmark = pytest.mark.django_db


class _FormFields(HTMLParser):
    """The fields a browser would submit from the form with the given id."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._select_value: str | None = None
        self._first_option: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.inside = attr.get("id") == self.form_id
            return
        if not self.inside or ("name" not in attr and tag != "option"):
            return
        if tag == "input":
            kind = attr.get("type", "text")
            if kind in {"submit", "button", "file", "image"}:
                return
            if kind in {"checkbox", "radio"} and "checked" not in attr:
                return
            self.fields.append(
                (attr["name"], attr.get("value", "on" if kind == "checkbox" else ""))
            )
        elif tag == "select":
            self._select, self._select_value, self._first_option = attr["name"], None, None
        elif tag == "option" and self._select is not None:
            value = attr.get("value", "")
            if self._first_option is None:
                self._first_option = value
            if "selected" in attr:
                self._select_value = value
        elif tag == "textarea":
            self._textarea, self._text = attr["name"], ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select is not None:
            value = self._select_value if self._select_value is not None else self._first_option
            self.fields.append((self._select, value or ""))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None


def form_data(response, form_id: str, **changes: object) -> dict[str, object]:
    """The form as the page rendered it, with `changes` applied (None removes a field)."""
    assert response.status_code == 200, response.status_code
    parser = _FormFields(form_id)
    parser.feed(response.content.decode())
    data: dict[str, object] = {}
    for name, value in parser.fields:
        data.setdefault(name, value)
    assert data, f"no form {form_id!r} on the page"
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def admin_events(since: int = 0) -> list[tuple[str, int | None, str, str]]:
    return list(
        Event.objects.filter(seq__gt=since)
        .order_by("seq")
        .values_list("type", "version", "source", "actor_name")
    )


def last_seq() -> int:
    return Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def model(actor):
    """`m` with versions 1 (Production), 2 (Production), 3 (Staging) and 4, alias prod → 2."""
    created = make_model(actor, "m", description="desc", tags={"team": "risk"})
    for number in range(1, 5):
        make_version(actor, created, source=f"s3://m/{number}", tags={"n": str(number)})
    stages = {1: Stage.PRODUCTION, 2: Stage.PRODUCTION, 3: Stage.STAGING}
    for number, stage in stages.items():
        version = ModelVersion.objects.get(model=created, version=number)
        services.version_transition(version=version, stage=stage, actor=actor)
    services.alias_set(model=created, alias="prod", version=2, actor=actor)
    return RegisteredModel.objects.get(pk=created.pk)


def version(number: int) -> ModelVersion:
    return ModelVersion.objects.get(model__name="m", version=number)


# --- pages load -------------------------------------------------------------------------------


def test_admin_index_lists_the_registry(staff, model):
    response = staff.get("/admin/")

    assert response.status_code == 200
    assert b"/admin/registry/registeredmodel/" in response.content
    assert b"/admin/registry/modelversion/" in response.content
    assert b"/admin/registry/event/" in response.content


@pytest.mark.parametrize(
    ("path", "count"),
    [
        ("/admin/registry/registeredmodel/", 1),
        ("/admin/registry/registeredmodel/?q=m", 1),
        ("/admin/registry/registeredmodel/?q=zzz", 0),
        ("/admin/registry/modelversion/", 4),
        ("/admin/registry/modelversion/?stage__exact=Production", 2),
        ("/admin/registry/modelversion/?q=m", 4),
        ("/admin/registry/event/", 9),
        ("/admin/registry/event/?type__exact=model_version.created", 4),
        ("/admin/registry/event/?source__exact=shell", 9),
        ("/admin/registry/event/?q=alice", 9),
    ],
)
def test_changelists_load(staff, model, path, count):
    response = staff.get(path)

    assert response.status_code == 200
    assert response.context["cl"].result_count == count


def test_event_changelist_filters_by_model_from_the_history_link(staff, model, actor):
    make_model(actor, "other")
    link = f"/admin/registry/event/?model_id__exact={model.pk}"

    listing = staff.get("/admin/registry/registeredmodel/")
    response = staff.get(link)

    assert link.encode() in listing.content.replace(b"&amp;", b"&")
    assert response.status_code == 200
    assert response.context["cl"].result_count == Event.objects.filter(model_id=model.pk).count()
    assert response.context["cl"].result_count == 9


def test_model_change_page_loads_with_its_inlines(staff, model):
    response = staff.get(f"/admin/registry/registeredmodel/{model.pk}/change/")

    assert response.status_code == 200
    assert response.context["adminform"].form.initial["name"] == "m"
    inlines = {
        inline.formset.prefix: [str(form.instance) for form in inline.formset.forms]
        for inline in response.context["inline_admin_formsets"]
    }
    assert inlines == {
        "tags": ["team=risk"],
        "aliases": ["m@prod"],
        "versions": ["m v4", "m v3", "m v2", "m v1"],
    }


def test_version_change_page_loads(staff, model):
    response = staff.get(f"/admin/registry/modelversion/{version(2).pk}/change/")

    assert response.status_code == 200
    content = response.content.decode()
    assert response.context["adminform"].form.initial["stage"] == "Production"
    assert 'name="archive_existing_versions"' in content
    assert '<div class="readonly">s3://m/2</div>' in content
    assert '<div class="readonly">prod</div>' in content


def test_deleted_versions_are_not_in_the_version_admin(staff, model, actor):
    deleted = version(4)
    services.version_delete(version=deleted, actor=actor)

    listing = staff.get("/admin/registry/modelversion/")
    page = staff.get(f"/admin/registry/modelversion/{deleted.pk}/change/")

    assert b"3 model versions" in listing.content
    assert page.status_code == 302


def test_event_change_page_loads_read_only(staff, model):
    response = staff.get("/admin/registry/event/1/change/")

    assert response.status_code == 200
    content = response.content.decode()
    assert "registered_model.created" in content
    assert Event.objects.get(seq=1).hash in content
    assert 'name="_save"' not in content
    assert list(response.context["adminform"].form.fields) == []
    assert response.context["has_change_permission"] is False


# --- the Event admin is read-only -------------------------------------------------------------


def test_event_admin_refuses_add(staff, model):
    count = Event.objects.count()

    page = staff.get("/admin/registry/event/add/")
    post = staff.post("/admin/registry/event/add/", {"type": "forged", "actor_name": "x"})

    assert (page.status_code, post.status_code) == (403, 403)
    assert Event.objects.count() == count


def test_event_admin_refuses_change(staff, model):
    event = Event.objects.get(seq=1)

    response = staff.post(
        "/admin/registry/event/1/change/", {"type": "forged", "actor_name": "mallory"}
    )

    assert response.status_code == 403
    stored = Event.objects.get(seq=1)
    assert (stored.type, stored.actor_name, stored.hash) == (event.type, "alice", event.hash)


def test_event_admin_refuses_delete(staff, model):
    count = Event.objects.count()

    page = staff.get("/admin/registry/event/1/delete/")
    post = staff.post("/admin/registry/event/1/delete/", {"post": "yes"})
    bulk = staff.post(
        "/admin/registry/event/", {"action": "delete_selected", "_selected_action": ["1", "2"]}
    )

    assert (page.status_code, post.status_code) == (403, 403)
    # The action does not exist for events: the changelist is shown again, nothing done.
    assert bulk.status_code == 200
    assert Event.objects.count() == count


def test_event_changelist_offers_no_add_or_delete(staff, model):
    response = staff.get("/admin/registry/event/")

    assert b"/admin/registry/event/add/" not in response.content
    assert b"delete_selected" not in response.content


def test_version_admin_offers_no_add(staff, model):
    count = ModelVersion.objects.count()

    response = staff.post("/admin/registry/modelversion/add/", {"description": "x"})

    assert response.status_code == 403
    assert ModelVersion.objects.count() == count


# --- changes go through the services ---------------------------------------------------------


def test_adding_a_model_in_the_admin_records_an_admin_event(staff, admin_user):
    page = staff.get("/admin/registry/registeredmodel/add/")

    response = staff.post(
        "/admin/registry/registeredmodel/add/",
        form_data(page, "registeredmodel_form", name="fraud", description="Scores payments."),
    )

    assert response.status_code == 302
    model = RegisteredModel.objects.get()
    assert (model.name, model.description, model.created_by) == (
        "fraud",
        "Scores payments.",
        admin_user,
    )
    event = Event.objects.get()
    assert event.type == "registered_model.created"
    assert (event.source, event.actor_name, event.actor_id) == ("admin", "root", admin_user.pk)
    assert event.model_id == model.pk
    assert event.after == {"name": "fraud", "description": "Scores payments.", "tags": {}}
    assert response["Location"] == "/admin/registry/registeredmodel/"


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("a/b", "Invalid model name 'a/b': it may not contain '/' or ':'."),
        ("a:b", "Invalid model name 'a:b': it may not contain '/' or ':'."),
        ("   ", "This field is required."),
        ("n" * 257, "Ensure this value has at most 256 characters (it has 257)."),
    ],
    ids=["slash", "colon", "blank", "too-long"],
)
def test_adding_a_model_with_an_invalid_name_shows_an_error(staff, name, error):
    page = staff.get("/admin/registry/registeredmodel/add/")

    response = staff.post(
        "/admin/registry/registeredmodel/add/", form_data(page, "registeredmodel_form", name=name)
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"name": [error]}
    assert RegisteredModel.objects.count() == 0
    assert Event.objects.count() == 0


def test_adding_a_model_with_a_taken_name_shows_an_error(staff, model):
    count = Event.objects.count()
    page = staff.get("/admin/registry/registeredmodel/add/")

    response = staff.post(
        "/admin/registry/registeredmodel/add/", form_data(page, "registeredmodel_form", name="m")
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"] == [
        "Registered model with this Name already exists."
    ]
    assert RegisteredModel.objects.count() == 1
    assert Event.objects.count() == count


def test_renaming_a_model_in_the_admin_keeps_everything_and_records_it(staff, model):
    since = last_seq()
    path = f"/admin/registry/registeredmodel/{model.pk}/change/"

    response = staff.post(path, form_data(staff.get(path), "registeredmodel_form", name="m2"))

    assert response.status_code == 302
    stored = RegisteredModel.objects.get()
    assert (stored.pk, stored.name, stored.description, stored.last_version) == (
        model.pk,
        "m2",
        "desc",
        4,
    )
    assert ModelVersion.objects.filter(model=stored).count() == 4
    assert list(ModelAlias.objects.values_list("alias", "version__version")) == [("prod", 2)]
    assert dict(stored.tags.values_list("key", "value")) == {"team": "risk"}
    assert admin_events(since) == [("registered_model.renamed", None, "admin", "root")]
    event = Event.objects.get(seq=since + 1)
    assert (event.before["name"], event.after["name"]) == ("m", "m2")


def test_renaming_and_describing_in_one_save_records_both(staff, model):
    since = last_seq()
    path = f"/admin/registry/registeredmodel/{model.pk}/change/"

    response = staff.post(
        path, form_data(staff.get(path), "registeredmodel_form", name="m2", description="new")
    )

    assert response.status_code == 302
    stored = RegisteredModel.objects.get()
    assert (stored.name, stored.description) == ("m2", "new")
    assert admin_events(since) == [
        ("registered_model.renamed", None, "admin", "root"),
        ("registered_model.updated", None, "admin", "root"),
    ]


def test_saving_a_model_unchanged_records_nothing(staff, model):
    since = last_seq()
    path = f"/admin/registry/registeredmodel/{model.pk}/change/"

    response = staff.post(path, form_data(staff.get(path), "registeredmodel_form"))

    assert response.status_code == 302
    assert admin_events(since) == []


def test_renaming_to_an_invalid_or_taken_name_shows_an_error(staff, model, actor):
    make_model(actor, "other")
    since = last_seq()
    path = f"/admin/registry/registeredmodel/{model.pk}/change/"
    page = staff.get(path)

    invalid = staff.post(path, form_data(page, "registeredmodel_form", name="a/b"))
    taken = staff.post(path, form_data(page, "registeredmodel_form", name="other"))

    assert (invalid.status_code, taken.status_code) == (200, 200)
    assert invalid.context["adminform"].form.errors == {
        "name": ["Invalid model name 'a/b': it may not contain '/' or ':'."]
    }
    assert taken.context["adminform"].form.errors == {
        "name": ["Registered model with this Name already exists."]
    }
    assert sorted(RegisteredModel.objects.values_list("name", flat=True)) == ["m", "other"]
    assert admin_events(since) == []


def test_deleting_a_model_in_the_admin_goes_through_the_service(staff, model):
    since = last_seq()

    response = staff.post(f"/admin/registry/registeredmodel/{model.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert RegisteredModel.objects.count() == 0
    assert ModelVersion.objects.count() == 0
    assert admin_events(since) == [("registered_model.deleted", None, "admin", "root")]


def test_changing_a_version_stage_with_archiving_records_admin_events(staff, model):
    since = last_seq()
    path = f"/admin/registry/modelversion/{version(4).pk}/change/"

    response = staff.post(
        path,
        form_data(
            staff.get(path), "modelversion_form", stage="Production", archive_existing_versions="on"
        ),
    )

    assert response.status_code == 302
    stages = dict(ModelVersion.objects.values_list("version", "stage"))
    assert stages == {1: "Archived", 2: "Archived", 3: "Staging", 4: "Production"}
    assert admin_events(since) == [
        ("model_version.stage_transitioned", 1, "admin", "root"),
        ("model_version.stage_transitioned", 2, "admin", "root"),
        ("model_version.stage_transitioned", 4, "admin", "root"),
    ]
    # The alias stays on its (now archived) version.
    assert list(ModelAlias.objects.values_list("alias", "version__version")) == [("prod", 2)]


def test_changing_a_version_stage_without_archiving_leaves_the_others(staff, model):
    since = last_seq()
    path = f"/admin/registry/modelversion/{version(4).pk}/change/"

    response = staff.post(
        path,
        form_data(
            staff.get(path), "modelversion_form", stage="Staging", archive_existing_versions=None
        ),
    )

    assert response.status_code == 302
    stages = dict(ModelVersion.objects.values_list("version", "stage"))
    assert stages == {1: "Production", 2: "Production", 3: "Staging", 4: "Staging"}
    assert admin_events(since) == [("model_version.stage_transitioned", 4, "admin", "root")]


def test_changing_a_version_description_records_an_update(staff, model):
    since = last_seq()
    path = f"/admin/registry/modelversion/{version(3).pk}/change/"

    response = staff.post(
        path, form_data(staff.get(path), "modelversion_form", description="retrained")
    )

    assert response.status_code == 302
    assert version(3).description == "retrained"
    assert version(3).stage == "Staging"
    assert admin_events(since) == [("model_version.updated", 3, "admin", "root")]


@pytest.mark.parametrize("stage", ["Archived", "None"])
def test_archiving_others_is_refused_for_other_stages_with_a_form_error(staff, model, stage):
    since = last_seq()
    path = f"/admin/registry/modelversion/{version(4).pk}/change/"

    response = staff.post(
        path,
        form_data(
            staff.get(path), "modelversion_form", stage=stage, archive_existing_versions="on"
        ),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "archive_existing_versions": ["Only for Staging or Production."]
    }
    stages = dict(ModelVersion.objects.values_list("version", "stage"))
    assert stages == {1: "Production", 2: "Production", 3: "Staging", 4: "None"}
    assert admin_events(since) == []


def test_deleting_a_version_in_the_admin_is_soft_and_takes_its_aliases(staff, model):
    since = last_seq()

    response = staff.post(f"/admin/registry/modelversion/{version(2).pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert version(2).deleted_at is not None
    assert ModelAlias.objects.count() == 0
    assert admin_events(since) == [
        ("model_version_alias.deleted", 2, "admin", "root"),
        ("model_version.deleted", 2, "admin", "root"),
    ]


def test_archive_versions_action_archives_and_records_events(staff, model):
    since = last_seq()

    response = staff.post(
        "/admin/registry/modelversion/",
        {
            "action": "archive_versions",
            "_selected_action": [str(version(1).pk), str(version(3).pk)],
        },
        follow=True,
    )

    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == ["Archived 2 version(s)."]
    stages = dict(ModelVersion.objects.values_list("version", "stage"))
    assert stages == {1: "Archived", 2: "Production", 3: "Archived", 4: "None"}
    # In the changelist's order, newest version first.
    assert admin_events(since) == [
        ("model_version.stage_transitioned", 3, "admin", "root"),
        ("model_version.stage_transitioned", 1, "admin", "root"),
    ]
    assert Event.objects.get(seq=since + 1).after["stage"] == "Archived"


def test_admin_pages_need_a_staff_login(client, user, model):
    client.force_login(user)

    response = client.get("/admin/registry/registeredmodel/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
