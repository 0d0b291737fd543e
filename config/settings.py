"""Modelgate settings, driven by the environment.

With no environment set, Modelgate runs embedded: SQLite under var/ and a Celery broker on the
filesystem, so `make run` needs no server. DATABASE_URL and REDIS_URL switch to PostgreSQL and
Redis.
"""

import hashlib
import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

from config.env import env_secret, env_secret_list

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MODELGATE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    """SECRET_KEY (or SECRET_KEY_FILE), else one generated once and kept under var/."""
    if key := env_secret("SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key = get_random_secret_key()
        path.write_text(key)
        path.chmod(0o600)
        return key


DEBUG = env_bool("DEBUG")
SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# --- HTTPS ----------------------------------------------------------------------------------
# A deployment (SECRET_KEY given, DEBUG off) sits behind a TLS-terminating proxy: HTTPS-only
# cookies, HSTS, plain HTTP redirected. The embedded default (key generated under var/, `make
# run`, the tests) serves plain HTTP. Probes and scrapes reach the exempt paths over plain HTTP.
MODELGATE_HTTPS = env_bool("MODELGATE_HTTPS", not DEBUG and env_secret("SECRET_KEY") is not None)
SECURE_SSL_REDIRECT = env_bool("MODELGATE_SSL_REDIRECT", MODELGATE_HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = MODELGATE_HTTPS
SECURE_HSTS_SECONDS = (
    int(os.environ.get("MODELGATE_HSTS_SECONDS", "31536000")) if MODELGATE_HTTPS else 0
)
# HSTS binds the host that sends it and its subdomains; "preload" only consents to a listing
# someone must still request for the registrable domain.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("MODELGATE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("MODELGATE_HSTS_PRELOAD", True)
# The header in which the proxy says the client came over HTTPS; empty: trust no such header.
_proxy_ssl_header = os.environ.get(
    "MODELGATE_PROXY_SSL_HEADER", "X-Forwarded-Proto" if MODELGATE_HTTPS else ""
).strip()
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
# Django looks for its security, CSRF and clickjacking middleware by dotted path; Modelgate's
# are subclasses (config.middleware), which config.checks checks instead, fully.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

INSTALLED_APPS = [
    # Django's admin site, with its password page recorded in the history.
    "accounts.admin_site.AdminConfig",
    # Before django.contrib.auth: its createsuperuser and changepassword, recorded too.
    "accounts",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "pgtrigger",
    "registry",
    "workflows",
    "webhooks",
    "config",
]

MIDDLEWARE = [
    # First, so request latency (/metrics) covers the whole stack and every answer.
    "config.metrics.MetricsMiddleware",
    "config.middleware.RequestIdMiddleware",
    "config.logs.RequestIdLogMiddleware",
    # A NUL in a native API path or query is a 400 on every database (config/limits.py).
    "config.limits.NulRefusalMiddleware",
    # Django's own middleware, with hooks that run in the event loop under ASGI (see the module).
    "config.middleware.SecurityMiddleware",
    "config.staticfiles.StaticFilesMiddleware",
    "config.middleware.SessionMiddleware",
    "config.middleware.CommonMiddleware",
    "config.middleware.CsrfViewMiddleware",
    "config.middleware.AuthenticationMiddleware",
    "config.middleware.MessageMiddleware",
    "config.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_secret("DATABASE_URL") or ""
if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL)
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # A pool instead of CONN_MAX_AGE: under ASGI each request runs on its own thread, so
        # per-thread persistent connections would pile up; the pool is shared by all threads.
        _db["CONN_MAX_AGE"] = 0
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": int(os.environ.get("MODELGATE_DB_POOL_MIN", "2")),
            "max_size": int(os.environ.get("MODELGATE_DB_POOL_MAX", "20")),
            "timeout": 10,
        }
        # The hot paths' multi-table queries are prepared once per connection (config/sql.py);
        # MODELGATE_DB_PREPARE=0 behind a pooler that cannot keep prepared statements (PgBouncer
        # before 1.21 in transaction mode). Django's own cursors never prepare.
        if env_bool("MODELGATE_DB_PREPARE", True):
            _db["OPTIONS"].setdefault("prepare_threshold", 5)
    DATABASES = {"default": _db}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("MODELGATE_SQLITE_PATH", str(VAR_DIR / "modelgate.sqlite3")),
            "OPTIONS": {
                # IMMEDIATE takes the write lock when a transaction begins, so concurrent writers
                # queue on the busy timeout instead of failing with "database is locked" when a
                # read transaction tries to upgrade.
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                ),
            },
            "TEST": {"NAME": str(VAR_DIR / "test.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"

# --- Celery ---------------------------------------------------------------------------------
REDIS_URL = env_secret("REDIS_URL") or ""
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # Bounded waits: without socket timeouts a Redis that stops answering (a partition, a paused
    # server) hangs every request that queues a task after its commit, forever. 2 s is above
    # kombu's 1 s BRPOP, so idle workers never time out.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
        "visibility_timeout": 3600,
        "socket_connect_timeout": 2,
        "socket_timeout": 2,
    }
else:
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("out", "processed"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
# One quick retry of a failed publish, not Celery's four: the outbox and delivery sweepers
# re-send whatever could not be queued, so a request never waits long for a broker that is down.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULE = {
    "events-republish-stale": {
        "task": "registry.tasks.events_republish_stale",
        "schedule": 60.0,
    },
    "transition-requests-sweep": {
        "task": "workflows.tasks.requests_sweep",
        "schedule": 60.0,
    },
    "webhook-deliveries-sweep": {
        "task": "webhooks.tasks.deliveries_sweep",
        "schedule": float(os.environ.get("MODELGATE_WEBHOOK_SWEEP_INTERVAL", "5")),
    },
    "events-checkpoint": {
        "task": "registry.tasks.checkpoint_create",
        "schedule": float(os.environ.get("MODELGATE_CHECKPOINT_INTERVAL", "300")),
    },
}

# --- Auth, API ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "admin:login"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# No guardian "AnonymousUser" row: anonymous access is a setting (MODELGATE_ANONYMOUS_READ).
ANONYMOUS_USER_NAME = None

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "accounts.authentication.CachedBasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["config.api.AuthenticatedOrAnonymousRead"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

SPECTACULAR_SETTINGS = {
    "TITLE": "Modelgate API",
    "DESCRIPTION": "Model registry with an approval workflow.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # A PATCH body is what its serializer says (required fields stay required), not a copy with
    # every field optional: the input serializers here are written for their method.
    "COMPONENT_SPLIT_PATCH": False,
    # Two choice sets are both called `status`: name them apart.
    "ENUM_NAME_OVERRIDES": {
        "RequestStatusEnum": "workflows.choices.RequestStatus",
        "WebhookStatusEnum": "webhooks.choices.SubscriptionStatus",
    },
    # The MLflow registry routes (plain Django views, written out in registry/mlflow/openapi.py),
    # then the error answers of every operation (config/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "registry.mlflow.openapi.add_mlflow_routes",
        "config.openapi.document_errors",
    ],
}

# --- Cache (failed-login counters, rate limits) ----------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Authentication reads the throttle counters here: a hung Redis must not hang it.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Modelgate ------------------------------------------------------------------------------
# Who hears about each committed event (dotted paths of `consumer(event)`); webhooks by default.
MODELGATE_EVENT_CONSUMERS = env_list("MODELGATE_EVENT_CONSUMERS", "webhooks.fanout.event_fan_out")
# How long an approval that reaches the quorum waits for the apply task before answering.
MODELGATE_APPROVE_WAIT_SECONDS = float(os.environ.get("MODELGATE_APPROVE_WAIT_SECONDS", "5"))
# Checks on guarded writes (stage transitions, alias moves): approval policies refuse them.
MODELGATE_WRITE_GUARDS = ["workflows.guards.policy_guard"]
# What appends to the history for accounts (tokens, users, groups), which sit below the registry.
MODELGATE_EVENT_RECORDER = "registry.events.event_record"
# Key of the HMAC that API tokens are stored under; derived from SECRET_KEY unless set.
MODELGATE_TOKEN_PEPPER = (
    env_secret("MODELGATE_TOKEN_PEPPER")
    or hashlib.sha256(f"modelgate-token-pepper:{SECRET_KEY}".encode()).hexdigest()
)
# Key of the HMAC that signs history checkpoints. Set MODELGATE_CHECKPOINT_KEY and keep it out of
# the database and its backups: whoever can rewrite the events must not be able to re-sign.
# Unset, it is derived from SECRET_KEY. Keys named in MODELGATE_CHECKPOINT_KEY_FALLBACKS still
# verify the checkpoints they signed (rotation); new checkpoints use MODELGATE_CHECKPOINT_KEY.
MODELGATE_CHECKPOINT_KEY = (
    env_secret("MODELGATE_CHECKPOINT_KEY")
    or hashlib.sha256(f"modelgate-checkpoint-key:{SECRET_KEY}".encode()).hexdigest()
)
MODELGATE_CHECKPOINT_KEY_FALLBACKS = env_secret_list("MODELGATE_CHECKPOINT_KEY_FALLBACKS")
# Every signed-in user may register new models (a registry-wide grant can be required instead).
MODELGATE_ANY_USER_CAN_CREATE_MODELS = env_bool("MODELGATE_ANY_USER_CAN_CREATE_MODELS", True)
# The level the creator of a model gets on it: CAN_MANAGE, or CAN_EDIT for stricter registries.
MODELGATE_CREATOR_LEVEL = os.environ.get("MODELGATE_CREATOR_LEVEL", "CAN_MANAGE")
# Let unauthenticated callers read (never write) every model.
MODELGATE_ANONYMOUS_READ = env_bool("MODELGATE_ANONYMOUS_READ")
MODELGATE_AUTH_FAILURES_PER_MINUTE = int(os.environ.get("MODELGATE_AUTH_FAILURES_PER_MINUTE", "30"))
# Events whose publishing has not finished after this long are picked up by the sweeper.
MODELGATE_EVENT_REPUBLISH_AFTER_SECONDS = 30
# A queued publishing task is trusted to come this long; past it the next append queues another
# (registry/publishing.py: one task per burst of events, not one per event; 0: one per append).
MODELGATE_EVENT_PUBLISH_PENDING_SECONDS = float(
    os.environ.get("MODELGATE_EVENT_PUBLISH_PENDING_SECONDS", "5")
)
# While events keep coming, a publishing run waits this long between passes over the outbox, so
# a stream of writes is handed over in batches (0: one pass, then the run ends).
MODELGATE_EVENT_PUBLISH_LINGER_SECONDS = float(
    os.environ.get("MODELGATE_EVENT_PUBLISH_LINGER_SECONDS", "0.05")
)
# --- Limits (docs/operations.md, "Hardening") -----------------------------------------------
# The largest page a native list answers; `page_size` above it is a 400, never clamped.
MODELGATE_MAX_PAGE_SIZE = int(os.environ.get("MODELGATE_MAX_PAGE_SIZE", "1000"))
# Request bodies over this many bytes are refused: 413 on the native API, 400 on MLflow routes.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("MODELGATE_MAX_REQUEST_BYTES", str(2_621_440)))
# API tokens a user may create (POST /api/v1/tokens/), as DRF rates ("20/min", "100/hour");
# more is a 429 with Retry-After. Counted in the cache, like failed sign-ins. Empty: no limit.
MODELGATE_TOKEN_CREATE_RATE = os.environ.get("MODELGATE_TOKEN_CREATE_RATE", "20/min").strip()
# The alias poll path: how long it trusts a credential's user and the caller's level (seconds),
# and how many reused threads (with persistent connections, on SQLite too) run its queries;
# 0 threads runs them the way Django runs sync code, a thread and a connection per request, and
# sends the route through Django's ASGI handler instead of config.asgi's lean lane.
MODELGATE_POLL_AUTH_TTL = float(os.environ.get("MODELGATE_POLL_AUTH_TTL", "2"))
MODELGATE_POLL_THREADS = int(os.environ.get("MODELGATE_POLL_THREADS", "4"))
# config.asgi's lean lane for the poll route (and its 304s from memory); 0 sends the route
# through Django's ASGI handler like every other (bench/run.py --before measures both).
MODELGATE_POLL_LEAN = env_bool("MODELGATE_POLL_LEAN", True)
# How many threads per web process run the MLflow routes' writes in config.asgi's middleware
# lane (each takes a pooled connection for the request only); 0 sends them through Django's ASGI
# handler. Writes wait on the event chain's one head row anyway, so a few are plenty.
MODELGATE_WRITE_THREADS = int(os.environ.get("MODELGATE_WRITE_THREADS", "4"))
# How often each web process looks for new events to wake long-polls and drop cached aliases.
MODELGATE_EVENT_WATCH_INTERVAL = float(os.environ.get("MODELGATE_EVENT_WATCH_INTERVAL", "0.2"))

# /metrics (config/metrics.py, docs/operations.md): for a caller presenting this token
# (`Authorization: Bearer …`), or a direct client (no proxy headers) from these networks.
MODELGATE_METRICS_TOKEN = env_secret("MODELGATE_METRICS_TOKEN")
MODELGATE_METRICS_ALLOWED_NETWORKS = env_list(
    "MODELGATE_METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"
)

# --- Webhooks -------------------------------------------------------------------------------
# Key that encrypts webhook secrets and headers at rest; derived from SECRET_KEY unless set.
# Keys in the _FALLBACKS list still decrypt what they encrypted (rotation).
MODELGATE_WEBHOOK_SECRET_KEY = (
    env_secret("MODELGATE_WEBHOOK_SECRET_KEY")
    or hashlib.sha256(f"modelgate-webhook-key:{SECRET_KEY}".encode()).hexdigest()
)
MODELGATE_WEBHOOK_SECRET_KEY_FALLBACKS = env_secret_list("MODELGATE_WEBHOOK_SECRET_KEY_FALLBACKS")
# Seconds to wait before each retry after a failed attempt (each ±20 % jitter): 47.6 h in all.
MODELGATE_WEBHOOK_RETRY_SCHEDULE = [
    float(s)
    for s in env_list(
        "MODELGATE_WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000,36000,36000"
    )
]
# Networks webhooks may reach although they are not public (development, tests); CIDRs.
MODELGATE_WEBHOOK_ALLOWED_NETWORKS = env_list("MODELGATE_WEBHOOK_ALLOWED_NETWORKS")
# A subscription whose deliveries have failed for this long is disabled (5 days).
MODELGATE_WEBHOOK_DISABLE_AFTER_SECONDS = float(
    os.environ.get("MODELGATE_WEBHOOK_DISABLE_AFTER_SECONDS", str(5 * 24 * 3600))
)
# How long a worker holds a delivery it is sending (longer than the 15 s request timeout);
# after that, a delivery whose worker died is handed out again.
MODELGATE_WEBHOOK_LEASE_SECONDS = float(os.environ.get("MODELGATE_WEBHOOK_LEASE_SECONDS", "60"))
# A due delivery handed to the broker this long ago and still not sent is handed out again
# (the broker lost the message: flushed, restarted without persistence).
MODELGATE_WEBHOOK_REDISPATCH_AFTER_SECONDS = float(
    os.environ.get("MODELGATE_WEBHOOK_REDISPATCH_AFTER_SECONDS", "30")
)
# After a secret rotation, deliveries are signed with the old secret too for this long.
MODELGATE_WEBHOOK_SECRET_OVERLAP_SECONDS = float(
    os.environ.get("MODELGATE_WEBHOOK_SECRET_OVERLAP_SECONDS", str(24 * 3600))
)

# --- Static, i18n ---------------------------------------------------------------------------
STATIC_URL = "static/"
# Collected by `make run` on each start, and into the image when it is built (Dockerfile);
# served by config.staticfiles (WhiteNoise), gzipped copies beside the files.
STATIC_ROOT = Path(os.environ.get("MODELGATE_STATIC_ROOT", VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Text for people (the default: `make run`, tests); json for log collectors: one object a line,
# with the request id (config/logs.py). The deployment files set json.
MODELGATE_LOG_FORMAT = os.environ.get("MODELGATE_LOG_FORMAT", "text").strip().lower()
if MODELGATE_LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"MODELGATE_LOG_FORMAT must be text or json: {MODELGATE_LOG_FORMAT}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logs.json_formatter"},
    },
    "filters": {"request_id": {"()": "config.logs.RequestIdFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if MODELGATE_LOG_FORMAT == "json" else "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
