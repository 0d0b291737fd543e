from django.urls import path

from registry.api import history, permissions, views

urlpatterns = [
    path("models/", views.ModelListCreateApi.as_view(), name="model-list"),
    path("models/<str:name>/", views.ModelDetailApi.as_view(), name="model-detail"),
    path("models/<str:name>/rename/", views.ModelRenameApi.as_view(), name="model-rename"),
    path(
        "models/<str:name>/permissions/",
        permissions.ModelPermissionsApi.as_view(),
        name="model-permissions",
    ),
    path("models/<str:name>/tags/<str:key>/", views.ModelTagApi.as_view(), name="model-tag"),
    path(
        "models/<str:name>/versions/",
        views.VersionListCreateApi.as_view(),
        name="version-list",
    ),
    path(
        "models/<str:name>/versions/<str:version>/",
        views.VersionDetailApi.as_view(),
        name="version-detail",
    ),
    path(
        "models/<str:name>/versions/<str:version>/stage/",
        views.VersionStageApi.as_view(),
        name="version-stage",
    ),
    path(
        "models/<str:name>/versions/<str:version>/tags/<str:key>/",
        views.VersionTagApi.as_view(),
        name="version-tag",
    ),
    path("models/<str:name>/aliases/", views.AliasListApi.as_view(), name="alias-list"),
    path(
        "models/<str:name>/aliases/<str:alias>/",
        views.alias_detail,
        name="alias-detail",
    ),
    path("events/", views.EventListApi.as_view(), name="event-list"),
    path("events/verify/", history.EventVerifyApi.as_view(), name="event-verify"),
    path("events/export/", history.EventExportApi.as_view(), name="event-export"),
    path("models/<str:name>/history/", history.ModelHistoryApi.as_view(), name="model-history"),
    path(
        "models/<str:name>/aliases/<str:alias>/history/",
        history.AliasHistoryApi.as_view(),
        name="alias-history",
    ),
]
