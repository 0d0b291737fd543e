"""`/api/v1/tokens/`: a user lists, creates and revokes their own API tokens."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.actors import Actor
from accounts.api import serializers as s
from accounts.models import ApiToken
from accounts.throttling import TokenCreateThrottle
from accounts.tokens import registered_models_named, token_create, token_revoke
from config.api import validated
from config.errors import InvalidParameter, NotFound, PermissionDenied


def _refuse_token_callers(request: Request) -> None:
    # A token must not mint or revoke tokens: a leaked one could otherwise outlive its own
    # revocation. Tokens are managed with a password login (session or Basic), the admin or
    # the shell.
    if isinstance(request.auth, ApiToken):
        raise PermissionDenied("API tokens cannot manage tokens; sign in with your password.")


class TokenListCreateApi(generics.ListAPIView):
    serializer_class = s.TokenOutSerializer
    throttle_classes = [TokenCreateThrottle]  # POST only

    def get_queryset(self) -> Any:
        tokens = ApiToken.objects.filter(user_id=self.request.user.pk)  # type: ignore[misc]
        return tokens.prefetch_related("models")

    @extend_schema(request=s.TokenCreateInSerializer, responses={201: s.TokenCreatedOutSerializer})
    def post(self, request: Request) -> Response:
        _refuse_token_callers(request)
        data = validated(s.TokenCreateInSerializer, request.data)
        names = data.pop("models")
        models = registered_models_named(names)
        missing = sorted(set(names) - {model.name for model in models})
        if missing:
            raise InvalidParameter(
                f"No registered model named: {', '.join(missing)}.",
                fields={"models": [f"Unknown: {', '.join(missing)}."]},
            )
        issued = token_create(
            user=request.user, actor=Actor.of_request(request), models=models, **data
        )
        body = s.TokenOutSerializer(issued.token).data | {"token": issued.secret}
        return Response(body, status=status.HTTP_201_CREATED)


class TokenDetailApi(APIView):
    @extend_schema(responses=s.TokenOutSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.TokenOutSerializer(self._token(request, pk)).data)

    @extend_schema(responses={204: None}, description="Revoke the token (it stays listed).")
    def delete(self, request: Request, pk: int) -> Response:
        _refuse_token_callers(request)
        token_revoke(token=self._token(request, pk), actor=Actor.of_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _token(self, request: Request, pk: int) -> ApiToken:
        token = ApiToken.objects.filter(user_id=request.user.pk, pk=pk).first()  # type: ignore[misc]
        if token is None:
            raise NotFound(f"You have no API token with id {pk}.")
        return token
