from django.apps import AppConfig


class RegistryConfig(AppConfig):
    verbose_name = "Registry"
    name = "registry"
    default_auto_field = "django.db.models.BigAutoField"
