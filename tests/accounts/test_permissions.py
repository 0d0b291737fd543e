"""Permission levels: grants, inheritance, tokens, and the native and Databricks ACL routes."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from rest_framework.test import APIClient

from accounts.actors import Actor
from accounts.tokens import token_create
from config.errors import NotFound, PermissionDenied
from registry import selectors, services
from registry.models import Event, RegisteredModel, RegisteredModelUserGrant
from registry.permissions import Level, model_level, require_level
from tests.factories import make_model, make_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user(username="owner", password="owner-password-1")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-password-1")


@pytest.fixture
def model(owner):
    model = make_model(Actor(user=owner), name="fraud")
    make_version(Actor(user=owner), model)
    return model


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


def grant(model, user, level: Level) -> None:
    services.permissions_update(
        model=model, actor=Actor.system(), users={user.username: level}, groups={}
    )


def test_the_creator_gets_can_manage(model, owner):
    assert model_level(Actor(user=owner), model) is Level.CAN_MANAGE
    assert RegisteredModelUserGrant.objects.get().permission.codename == "can_manage"


def test_creator_level_is_a_setting(settings, owner):
    settings.MODELGATE_CREATOR_LEVEL = "CAN_EDIT"
    model = make_model(Actor(user=owner), name="strict")
    assert model_level(Actor(user=owner), model) is Level.CAN_EDIT


def test_no_grant_means_not_found_and_a_lower_level_means_forbidden(model, bob):
    actor = Actor(user=bob)
    with pytest.raises(NotFound):
        require_level(actor, model, Level.CAN_READ)
    grant(model, bob, Level.CAN_READ)
    actor = Actor(user=bob)
    assert require_level(actor, model, Level.CAN_READ) is Level.CAN_READ
    with pytest.raises(PermissionDenied, match="CAN_EDIT"):
        require_level(actor, model, Level.CAN_EDIT)


def test_group_and_registry_wide_grants_count_and_the_highest_wins(model, bob):
    group = Group.objects.create(name="ml")
    bob.groups.add(group)
    services.permissions_update(
        model=model, actor=Actor.system(), users={}, groups={"ml": Level.CAN_EDIT}
    )
    assert model_level(Actor(user=bob), model) is Level.CAN_EDIT
    bob.user_permissions.add(Permission.objects.get(codename="can_manage_staging_versions"))
    assert model_level(Actor(user=bob), model) is Level.CAN_MANAGE_STAGING_VERSIONS
    other = make_model(Actor.system(), name="other")
    # The registry-wide grant covers every model, the group grant only its own.
    assert model_level(Actor(user=bob), other) is Level.CAN_MANAGE_STAGING_VERSIONS


def test_superusers_and_the_system_manage_everything(model, admin_user):
    assert model_level(Actor(user=admin_user), model) is Level.CAN_MANAGE
    assert model_level(Actor.system(), model) is Level.CAN_MANAGE


def test_read_only_tokens_cap_at_read_and_limited_tokens_see_only_their_models(model, owner):
    other = make_model(Actor(user=owner), name="other")
    read_only = token_create(user=owner, read_only=True).token
    assert model_level(Actor(user=owner, token=read_only), model) is Level.CAN_READ
    limited = token_create(user=owner, models=[other]).token
    assert model_level(Actor(user=owner, token=limited), model) is Level.NONE
    assert model_level(Actor(user=owner, token=limited), other) is Level.CAN_MANAGE
    names = selectors.model_list(actor=Actor(user=owner, token=limited)).values_list(
        "name", flat=True
    )
    assert list(names) == ["other"]


def test_lists_and_history_show_only_visible_models(model, bob):
    make_model(Actor(user=bob), name="bobs")
    listed = client_for(bob).get("/api/v1/models/").json()["results"]
    assert [item["name"] for item in listed] == ["bobs"]
    events = client_for(bob).get("/api/v1/events/").json()["results"]
    assert {item["model"]["name"] for item in events} == {"bobs"}
    versions = client_for(bob).get("/api/2.0/mlflow/model-versions/search").json()
    assert versions == {}


def test_model_creation_can_be_restricted_to_a_registry_wide_permission(settings, bob):
    settings.MODELGATE_ANY_USER_CAN_CREATE_MODELS = False
    response = client_for(bob).post("/api/v1/models/", {"name": "x"}, format="json")
    assert response.status_code == 403
    assert RegisteredModel.objects.count() == 0
    assert Event.objects.count() == 0
    bob.user_permissions.add(Permission.objects.get(codename="add_registeredmodel"))
    bob = type(bob).objects.get(pk=bob.pk)  # drop Django's permission cache
    assert client_for(bob).post("/api/v1/models/", {"name": "x"}, format="json").status_code == 201


def test_anonymous_read_setting_allows_reads_only(settings, model):
    anon = APIClient()
    assert anon.get("/api/v1/models/fraud/").status_code == 401
    settings.MODELGATE_ANONYMOUS_READ = True
    assert anon.get("/api/v1/models/fraud/").status_code == 200
    assert anon.get("/api/v1/models/fraud/aliases/").status_code == 200
    assert anon.get("/api/2.0/mlflow/registered-models/get?name=fraud").status_code == 200
    assert (
        anon.patch("/api/v1/models/fraud/", {"description": "x"}, format="json").status_code == 401
    )
    response = anon.post("/api/2.0/mlflow/registered-models/create", {"name": "y"}, format="json")
    assert response.status_code == 401
    assert RegisteredModel.objects.count() == 1


# --- native ACL route -----------------------------------------------------------------------


def test_native_permissions_get_put_patch(model, owner, bob):
    Group.objects.create(name="ml")
    client = client_for(owner)
    url = "/api/v1/models/fraud/permissions/"
    body = client.get(url).json()
    assert body["model"] == "fraud"
    assert body["access_control_list"] == [
        {
            "user_name": "owner",
            "display_name": "owner",
            "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": False}],
        }
    ]
    events_before = Event.objects.count()
    response = client.patch(
        url,
        {"access_control_list": [{"user_name": "bob", "permission_level": "CAN_EDIT"}]},
        format="json",
    )
    assert response.status_code == 200
    assert model_level(Actor(user=bob), model) is Level.CAN_EDIT
    assert model_level(Actor(user=owner), model) is Level.CAN_MANAGE
    event = Event.objects.get(seq=events_before + 1)
    assert event.type == "registered_model_permissions.updated"
    assert event.after == {"users": {"bob": "CAN_EDIT", "owner": "CAN_MANAGE"}, "groups": {}}

    response = client.put(
        url,
        {
            "access_control_list": [
                {"user_name": "owner", "permission_level": "CAN_MANAGE"},
                {"group_name": "ml", "permission_level": "CAN_READ"},
            ]
        },
        format="json",
    )
    assert response.status_code == 200
    assert model_level(Actor(user=bob), model) is Level.NONE
    assert Event.objects.count() == events_before + 2


def test_only_can_manage_changes_permissions_and_bad_acls_change_nothing(model, bob):
    grant(model, bob, Level.CAN_MANAGE_PRODUCTION_VERSIONS)
    events = Event.objects.count()
    url = "/api/v1/models/fraud/permissions/"
    body = {"access_control_list": [{"user_name": "bob", "permission_level": "CAN_MANAGE"}]}
    assert client_for(bob).patch(url, body, format="json").status_code == 403
    assert client_for(bob).get(url).status_code == 403
    owner_client = client_for(model.created_by)
    for bad in (
        [{"user_name": "ghost", "permission_level": "CAN_READ"}],
        [{"user_name": "bob", "permission_level": "CAN_FLY"}],
        [{"user_name": "bob", "group_name": "ml", "permission_level": "CAN_READ"}],
        [{"service_principal_name": "sp", "permission_level": "CAN_READ"}],
        "everyone",
    ):
        response = owner_client.patch(url, {"access_control_list": bad}, format="json")
        assert response.status_code == 400, bad
    assert Event.objects.count() == events
    assert model_level(Actor(user=bob), model) is Level.CAN_MANAGE_PRODUCTION_VERSIONS


def test_grants_follow_a_rename_and_go_with_a_deletion(model, owner, bob):
    grant(model, bob, Level.CAN_READ)
    services.model_rename(model=model, new_name="fraud-v2", actor=Actor(user=owner))
    assert client_for(bob).get("/api/v1/models/fraud-v2/").status_code == 200
    services.model_delete(model=model, actor=Actor(user=owner))
    assert RegisteredModelUserGrant.objects.count() == 0


# --- Databricks routes ----------------------------------------------------------------------


def test_databricks_model_get_has_id_and_permission_level(model, bob):
    grant(model, bob, Level.CAN_MANAGE_STAGING_VERSIONS)
    response = client_for(bob).get("/api/2.0/mlflow/databricks/registered-models/get?name=fraud")
    assert response.status_code == 200
    body = response.json()["registered_model_databricks"]
    assert body["id"] == str(model.pk)
    assert body["name"] == "fraud"
    assert body["permission_level"] == "CAN_MANAGE_STAGING_VERSIONS"
    assert body["user_id"] == "owner"


def test_databricks_permissions_routes(model, owner, bob):
    client = client_for(owner)
    url = f"/api/2.0/permissions/registered-models/{model.pk}"
    body = client.get(url).json()
    assert body["object_id"] == f"/registered-models/{model.pk}"
    assert body["object_type"] == "registered-model"
    response = client.patch(
        url,
        {"access_control_list": [{"user_name": "bob", "permission_level": "CAN_READ"}]},
        format="json",
    )
    assert response.status_code == 200
    assert {"user_name": "bob", "display_name": "bob", "all_permissions": [
        {"permission_level": "CAN_READ", "inherited": False}
    ]} in response.json()["access_control_list"]  # fmt: skip
    # PUT with an empty list drops every direct grant (superusers keep their inherited level).
    response = client.put(url, {"access_control_list": []}, format="json")
    assert response.status_code == 200
    assert RegisteredModelUserGrant.objects.count() == 0
    assert client.get(url).status_code == 404  # the owner gave away its own access


def test_databricks_permission_levels_and_errors(model, owner, bob):
    client = client_for(owner)
    levels = client.get(f"/api/2.0/permissions/registered-models/{model.pk}/permissionLevels")
    assert [item["permission_level"] for item in levels.json()["permission_levels"]] == [
        "CAN_READ",
        "CAN_EDIT",
        "CAN_MANAGE_STAGING_VERSIONS",
        "CAN_MANAGE_PRODUCTION_VERSIONS",
        "CAN_MANAGE",
    ]
    missing = client.get("/api/2.0/permissions/registered-models/999999")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    hidden = client_for(bob).get(f"/api/2.0/permissions/registered-models/{model.pk}")
    assert hidden.status_code == 404
    grant(model, bob, Level.CAN_READ)
    denied = client_for(bob).get(f"/api/2.0/permissions/registered-models/{model.pk}")
    assert denied.status_code == 403
    assert denied.json()["error_code"] == "PERMISSION_DENIED"


# --- admin ----------------------------------------------------------------------------------


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        username="reviewer", password="reviewer-password-1", is_staff=True
    )


def test_staff_see_only_the_models_their_grants_allow(client, model, staff):
    make_model(Actor.system(), name="secret")
    grant(model, staff, Level.CAN_READ)
    client.force_login(staff)
    listing = client.get("/admin/registry/registeredmodel/")
    assert listing.status_code == 200
    names = [row.name for row in listing.context["cl"].result_list]
    assert names == ["fraud"]
    secret = RegisteredModel.objects.get(name="secret")
    assert client.get(f"/admin/registry/registeredmodel/{secret.pk}/change/").status_code == 302
    page = client.get(f"/admin/registry/registeredmodel/{model.pk}/change/")
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False  # CAN_READ: view only
    events = client.get("/admin/registry/event/")
    assert {row.model_name for row in events.context["cl"].result_list} == {"fraud"}


def test_staff_with_staging_level_cannot_promote_to_production(client, model, staff):
    grant(model, staff, Level.CAN_MANAGE_STAGING_VERSIONS)
    version = model.versions.get()
    client.force_login(staff)
    url = f"/admin/registry/modelversion/{version.pk}/change/"
    response = client.post(url, {"description": "", "stage": "Production"})
    assert response.status_code == 200  # the form again, with the error
    assert "needs CAN_MANAGE_PRODUCTION_VERSIONS" in response.content.decode()
    version.refresh_from_db()
    assert version.stage == "None"
    response = client.post(url, {"description": "", "stage": "Staging"})
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.stage == "Staging"
    assert Event.objects.filter(type="model_version.stage_transitioned").get().source == "admin"


def test_bulk_actions_check_every_object(client, model, staff, owner):
    production = make_version(Actor(user=owner), model)
    services.version_transition(version=production, stage="Production", actor=Actor(user=owner))
    grant(model, staff, Level.CAN_MANAGE_STAGING_VERSIONS)
    client.force_login(staff)
    versions = list(model.versions.order_by("version"))
    events = Event.objects.count()
    response = client.post(
        "/admin/registry/modelversion/",
        {"action": "archive_versions", "_selected_action": [v.pk for v in versions]},
        follow=True,
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "CAN_MANAGE_PRODUCTION_VERSIONS is needed" in text
    assert "Archived 1 version(s)." in text
    stages = dict(model.versions.values_list("version", "stage"))
    assert stages == {1: "Archived", 2: "Production"}
    assert Event.objects.count() == events + 1
