from django.urls import path

from webhooks.api import views

urlpatterns = [
    path("webhooks/", views.WebhookListCreateApi.as_view(), name="webhook-list"),
    path("webhooks/<str:pk>/", views.WebhookDetailApi.as_view(), name="webhook-detail"),
    path("webhooks/<str:pk>/test/", views.WebhookTestApi.as_view(), name="webhook-test"),
    path(
        "webhooks/<str:pk>/deliveries/",
        views.WebhookDeliveryListApi.as_view(),
        name="webhook-deliveries",
    ),
    path("deliveries/replay/", views.DeliveryReplayApi.as_view(), name="delivery-replay"),
    path("deliveries/<str:pk>/", views.DeliveryDetailApi.as_view(), name="delivery-detail"),
    path(
        "deliveries/<str:pk>/redeliver/",
        views.DeliveryRedeliverApi.as_view(),
        name="delivery-redeliver",
    ),
]
