"""The admin's read-only timelines of a model and of a version."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.actors import Actor
from registry import services
from registry.models import Event, ModelVersion
from registry.permissions import Level

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def staff(django_user_model) -> tuple[Client, object]:
    user = django_user_model.objects.create_user(username="sam", password="sam-pw-1", is_staff=True)
    client = Client()
    client.force_login(user)
    return client, user


def test_model_timeline_lists_its_events_newest_first(root, history):
    response = root.get(f"/admin/registry/registeredmodel/{history.pk}/timeline/")

    assert response.status_code == 200
    seqs = [event.seq for event, _ in response.context["rows"]]
    assert seqs == list(range(12, 0, -1))
    content = response.content.decode()
    assert "Timeline of fraud" in content
    assert "12 events" in content
    assert "stage: Staging → Production" in content  # what the transition changed
    assert "production: 1 → 2" in content  # the alias move
    assert 'href="/admin/registry/event/7/change/"' in content


def test_version_timeline_lists_only_that_versions_events(root, history):
    version = ModelVersion.objects.get(model=history, version=1)

    response = root.get(f"/admin/registry/modelversion/{version.pk}/timeline/")

    assert response.status_code == 200
    assert [event.seq for event, _ in response.context["rows"]] == [7, 5, 4, 2]
    assert "Timeline of fraud version 1" in response.content.decode()


def test_change_pages_link_to_their_timelines(root, history):
    version = ModelVersion.objects.get(model=history, version=1)

    model_page = root.get(f"/admin/registry/registeredmodel/{history.pk}/change/")
    version_page = root.get(f"/admin/registry/modelversion/{version.pk}/change/")

    assert f'href="/admin/registry/registeredmodel/{history.pk}/timeline/"' in (
        model_page.content.decode()
    )
    assert f'href="/admin/registry/modelversion/{version.pk}/timeline/"' in (
        version_page.content.decode()
    )


def test_the_timeline_pages(root, history, actor):
    for number in range(110):
        services.model_tag_set(model=history, key="k", value=str(number), actor=actor)

    first = root.get(f"/admin/registry/registeredmodel/{history.pk}/timeline/")
    second = root.get(f"/admin/registry/registeredmodel/{history.pk}/timeline/?page=2")

    assert len(first.context["rows"]) == 100
    assert [event.seq for event, _ in second.context["rows"]] == list(range(22, 0, -1))


def test_staff_without_a_grant_get_404(staff, history):
    client, _ = staff

    assert client.get(f"/admin/registry/registeredmodel/{history.pk}/timeline/").status_code == 404
    version = ModelVersion.objects.get(model=history, version=1)
    assert client.get(f"/admin/registry/modelversion/{version.pk}/timeline/").status_code == 404


def test_staff_with_a_read_grant_see_it(staff, history):
    client, _ = staff
    services.permissions_update(
        model=history, actor=Actor.system(), users={"sam": Level.CAN_READ}, groups={}
    )

    response = client.get(f"/admin/registry/registeredmodel/{history.pk}/timeline/")

    assert response.status_code == 200
    assert len(response.context["rows"]) == 13  # with the grant's own event


def test_non_staff_are_sent_to_the_login(history, user):
    client = Client()
    client.force_login(user)

    response = client.get(f"/admin/registry/registeredmodel/{history.pk}/timeline/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_deleted_models_timeline_stays_for_registry_wide_readers(root, staff, history, actor):
    pk = history.pk
    services.model_delete(model=history, actor=actor)
    client, _ = staff

    response = root.get(f"/admin/registry/registeredmodel/{pk}/timeline/")

    assert response.status_code == 200
    assert f"Timeline of deleted model #{pk}" in response.content.decode()
    assert response.context["rows"][0][0].type == "registered_model.deleted"
    assert client.get(f"/admin/registry/registeredmodel/{pk}/timeline/").status_code == 404
    assert root.get("/admin/registry/registeredmodel/999/timeline/").status_code == 404


def test_the_timeline_changes_nothing(root, history):
    count = Event.objects.count()

    response = root.post(f"/admin/registry/registeredmodel/{history.pk}/timeline/")

    assert response.status_code == 405
    assert Event.objects.count() == count
