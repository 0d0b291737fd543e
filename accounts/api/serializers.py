from rest_framework import serializers

from accounts.models import ApiToken
from config.api import InputSerializer


class TokenOutSerializer(serializers.ModelSerializer):
    models: serializers.Field = serializers.SlugRelatedField(
        slug_field="name", many=True, read_only=True
    )

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "read_only",
            "models",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        ]


class TokenCreatedOutSerializer(TokenOutSerializer):
    token = serializers.CharField(help_text="The secret; shown only in this response.")

    class Meta(TokenOutSerializer.Meta):
        fields = [*TokenOutSerializer.Meta.fields, "token"]


class TokenCreateInSerializer(InputSerializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    read_only = serializers.BooleanField(required=False, default=False)  # type: ignore[assignment]
    models = serializers.ListField(
        child=serializers.CharField(), required=False, default=list, max_length=1000
    )
    expires_in_days = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, max_value=3650
    )
