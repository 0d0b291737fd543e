from django.urls import path

from accounts.api import views

urlpatterns = [
    path("tokens/", views.TokenListCreateApi.as_view(), name="token-list"),
    path("tokens/<int:pk>/", views.TokenDetailApi.as_view(), name="token-detail"),
]
