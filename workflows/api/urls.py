from django.urls import path

from workflows.api import views

urlpatterns = [
    path("policies/", views.PolicyListCreateApi.as_view(), name="policy-list"),
    path("policies/<int:pk>/", views.PolicyDetailApi.as_view(), name="policy-detail"),
    path("transition-requests/", views.RequestListCreateApi.as_view(), name="request-list"),
    path("transition-requests/<int:pk>/", views.RequestDetailApi.as_view(), name="request-detail"),
    path(
        "transition-requests/<int:pk>/approve/",
        views.RequestApproveApi.as_view(),
        name="request-approve",
    ),
    path(
        "transition-requests/<int:pk>/reject/",
        views.RequestRejectApi.as_view(),
        name="request-reject",
    ),
    path(
        "transition-requests/<int:pk>/cancel/",
        views.RequestCancelApi.as_view(),
        name="request-cancel",
    ),
    path(
        "models/<str:name>/versions/<str:version>/comments/",
        views.VersionCommentListCreateApi.as_view(),
        name="version-comments",
    ),
    path(
        "models/<str:name>/versions/<str:version>/activity/",
        views.VersionActivityApi.as_view(),
        name="version-activity",
    ),
    path("comments/<int:pk>/", views.CommentDetailApi.as_view(), name="comment-detail"),
]
