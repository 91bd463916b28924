"""One settings module; every environment-specific value comes from the environment.

With nothing set, the product runs embedded: SQLite and the embedded broker (common/broker.py) under var/.
DEBUG is off unless set: the Makefile (`make run`, `make test`, ...) and the test suite (pytest_env
in pyproject.toml) set DEBUG=true. In development the secrets are generated once into var/ and
reused; with DEBUG off they must come from the environment (docs/operations.md).
"""

import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)


def _dev_secret(name: str, make) -> str:
    """var/<name>, created (0600) with make() by the first process that needs it and reused after.

    `make run` starts several processes at once: each writes a private temporary file and links it
    into place; os.link fails when the name exists, so one value wins and every process reads it."""
    path = VAR_DIR / name
    if not path.exists():
        tmp = VAR_DIR / f".{name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(make() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: last writer wins, still whole files
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip()


# Fernet keys for secrets at rest: the first encrypts, all decrypt (MultiFernet rotation).
if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _dev_secret("dev-secret-key", lambda: secrets.token_urlsafe(50))
    FERNET_KEYS = env.list("FERNET_KEYS", default=[]) or [
        _dev_secret("dev-fernet-key", lambda: Fernet.generate_key().decode())
    ]
else:
    _missing = [name for name in ("SECRET_KEY", "FERNET_KEYS") if not env.str(name, default="").strip()]
    if _missing:
        raise ImproperlyConfigured(
            f"{' and '.join(_missing)} must be set when DEBUG is off (production). Generate them with\n"
            '  SECRET_KEY:  python -c "import secrets; print(secrets.token_urlsafe(50))"\n'
            '  FERNET_KEYS: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"\n'
            "or set DEBUG=true for development (keys are then generated into var/). See docs/operations.md."
        )
    SECRET_KEY = env.str("SECRET_KEY")
    FERNET_KEYS = env.list("FERNET_KEYS")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "common",
    "fleet",
    "governance",
    "canary",
    "gitops",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "common.middleware.SecurityHeadersMiddleware",
    # Before LoginRequiredMiddleware: it loads request.user first, so an outage answers 503, not 500.
    "common.middleware.DatabaseUnavailableMiddleware",
    # Every view needs a signed-in user unless marked login_not_required (login, /healthz, /metrics);
    # DRF views (the API, the agent endpoints) are exempt and apply their own authentication.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "common.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "fleet:dashboard"
LOGOUT_REDIRECT_URL = "login"

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
                "fleet.context_processors.shell",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, worker, beat and simulator share the file: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
CELERY_TIMEZONE = TIME_ZONE  # beat's crontabs and the snapshot day (governance.services.snapshot_day) agree
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))  # deploy/build.sh fills it
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = DEBUG  # development serves from static/ directly; production runs collectstatic
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Security -------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers probe over plain HTTP and treat a redirect as a failure.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^livez$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "common.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["common.api.permissions.RolePermission"],
    # JSON in, JSON out: no multipart/form parsing surprises for nested fields, and the schema says so.
    "DEFAULT_PARSER_CLASSES": ["common.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "common.api.negotiation.ContentNegotiation",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "common.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "common.api.exceptions.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "agent": env.str("AGENT_THROTTLE", default="6000/min"),
        "register": env.str("REGISTER_THROTTLE", default="60/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Fleet Governance API",
    "DESCRIPTION": "Policies, compliance, canary deployments and GitOps for a server fleet.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Every choice set gets one stable name in the schema (several models have "kind"/"status" fields).
    "ENUM_NAME_OVERRIDES": {
        "InstanceStatusEnum": "fleet.choices.InstanceStatus",
        "ScopeKindEnum": "fleet.choices.ScopeKind",
        "CommandTypeEnum": "fleet.choices.CommandType",
        "CommandSourceEnum": "fleet.choices.CommandSource",
        "RunStatusEnum": "fleet.choices.RunStatus",
        "LicenseStateEnum": "fleet.choices.LicenseState",
        "RoleEnum": "common.choices.Role",
        "PolicyTypeEnum": "governance.choices.PolicyType",
        "SeverityEnum": "governance.choices.Severity",
        "ViolationStatusEnum": "governance.choices.ViolationStatus",
        "CanaryPhaseEnum": "canary.choices.Phase",
        "CanaryCriterionEnum": "canary.choices.Criterion",
        "ConflictStrategyEnum": "gitops.choices.ConflictStrategy",
        "RepositoryStatusEnum": "gitops.choices.RepositoryStatus",
        "SyncStatusEnum": "gitops.choices.SyncStatus",
        "ConfigLevelEnum": "gitops.choices.Level",
        "ConflictStatusEnum": "gitops.choices.ConflictStatus",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "common.api.schema.add_error_responses",
    ],
}

# --- Celery ---------------------------------------------------------------------------------
# With no broker configured: the embedded broker under var/celery (common/broker.py, docs/operations.md).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="atomicfs://")
if CELERY_BROKER_URL.startswith("atomicfs://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder": str(VAR_DIR / "celery"), "polling_interval": 0.5}
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connection before and after every task unless this is
# set: a new PostgreSQL connection per task was 25 ms of a heartbeat's 30 ms evaluation in the worker
# (bench/evaluation_worker.py). Connections are kept as for web requests instead (CONN_MAX_AGE,
# health checks; config/celery.py) and recycled after this many tasks.
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Beat records its heartbeat as it ticks; workers from a bootstep (common/liveness.py, docs/operations.md).
CELERY_BEAT_SCHEDULER = "common.liveness:LivenessScheduler"
LIVENESS_INTERVAL = env.int("LIVENESS_INTERVAL", default=15)
# A worker or beat not seen for longer: the banner on every page, "degraded" in /healthz.
LIVENESS_STALE_SECONDS = env.int("LIVENESS_STALE_SECONDS", default=60)
# Enforce mode (#16): how often the beat settles attempts and queues fixes (governance/remediation).
REMEDIATION_TICK_SECONDS = env.int("REMEDIATION_TICK_SECONDS", default=15)
# The weekly compliance digest e-mailed to the admins (governance/reports/digest.py): off unless turned on.
COMPLIANCE_DIGEST_ENABLED = env.bool("COMPLIANCE_DIGEST_ENABLED", default=False)
# Beat schedule in code; each entry expires just below its period so a backlog cannot pile up.
CELERY_BEAT_SCHEDULE = {
    "fleet-mark-offline": {
        "task": "fleet.tasks.mark_offline_instances",
        "schedule": timedelta(seconds=15),
        "options": {"expires": 14},
    },
    "fleet-expire-command-runs": {
        "task": "fleet.tasks.expire_command_runs",
        "schedule": timedelta(seconds=15),
        "options": {"expires": 14},
    },
    "governance-evaluate-time-based": {
        "task": "governance.tasks.evaluate_time_based",
        "schedule": timedelta(minutes=5),
        "options": {"expires": 290},
    },
    "governance-daily-snapshot": {
        "task": "governance.tasks.take_compliance_snapshot",
        "schedule": crontab(minute=5, hour=0),
        "options": {"expires": 3600},
    },
    "canary-advance-due": {  # the safety net: each round is enqueued for its own due time
        "task": "canary.tasks.advance_due_deployments",
        "schedule": timedelta(seconds=5),
        "options": {"expires": 4},
    },
    "common-prune-old-records": {  # retention (common/retention.py), at a quiet hour
        "task": "common.tasks.prune_old_records",
        "schedule": crontab(minute=30, hour=3),
        "options": {"expires": 3600},
    },
    "gitops-sync-due": {
        "task": "gitops.tasks.sync_due_repositories",
        "schedule": timedelta(seconds=15),
        "options": {"expires": 14},
    },
    # --- Enforce mode and reports (#16): governance/remediation, governance/reports ---
    "governance-remediation-tick": {
        "task": "governance.tasks.remediation_tick",
        "schedule": timedelta(seconds=REMEDIATION_TICK_SECONDS),
        "options": {"expires": max(1, REMEDIATION_TICK_SECONDS - 1)},
    },
    "governance-weekly-digest": {  # daily: sends the week's digest once, on the first run of the week
        "task": "governance.tasks.send_weekly_digest",
        "schedule": crontab(minute=0, hour=7),
        "options": {"expires": 3600},
    },
}

# --- Retention: days each kind of record is kept; 0 keeps it forever (common/retention.py) ------
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=365)
NOTIFICATION_RETENTION_DAYS = env.int("NOTIFICATION_RETENTION_DAYS", default=90)  # read ones only
COMMAND_RETENTION_DAYS = env.int("COMMAND_RETENTION_DAYS", default=90)  # every run finished
CANARY_POLL_RETENTION_DAYS = env.int("CANARY_POLL_RETENTION_DAYS", default=30)  # after the deployment ended
GITOPS_RUN_RETENTION_DAYS = env.int("GITOPS_RUN_RETENTION_DAYS", default=90)  # each repo keeps its latest 20
VIOLATION_RETENTION_DAYS = env.int("VIOLATION_RETENTION_DAYS", default=365)  # resolved ones only
SNAPSHOT_RETENTION_DAYS = env.int("SNAPSHOT_RETENTION_DAYS", default=400)  # per-instance daily compliance

# --- Fleet ----------------------------------------------------------------------------------
HEARTBEAT_INTERVAL = env.int("HEARTBEAT_INTERVAL", default=15)
OFFLINE_AFTER_MISSED = env.int("OFFLINE_AFTER_MISSED", default=3)
# An agent that repeats its registration within this many seconds (its reply was lost), before its
# first heartbeat, gets a new credential for the same instance instead of "name taken".
REGISTRATION_RETRY_SECONDS = env.int("REGISTRATION_RETRY_SECONDS", default=600)
COMMAND_PICKUP_TIMEOUT = env.int("COMMAND_PICKUP_TIMEOUT", default=300)
COMMAND_DEFAULT_TIMEOUT = env.int("COMMAND_DEFAULT_TIMEOUT", default=900)
# A run delivered but never acknowledged by its agent (the reply to GET /commands was lost) is delivered
# again after this many seconds, until its pickup deadline.
COMMAND_REDELIVER_AFTER = env.int("COMMAND_REDELIVER_AFTER", default=60)
GOVERNANCE_STALE_AFTER_SECONDS = env.int("GOVERNANCE_STALE_AFTER_SECONDS", default=3600)
# Canary: per-request health timeout (at most half a deployment's check interval), how often runs are
# re-checked without a signal, verification rounds after a rollback (docs/canary.md).
CANARY_PROBE_TIMEOUT = env.float("CANARY_PROBE_TIMEOUT", default=2.0)
CANARY_RECHECK_SECONDS = env.int("CANARY_RECHECK_SECONDS", default=5)
CANARY_VERIFY_ROUNDS = env.int("CANARY_VERIFY_ROUNDS", default=3)
LICENSE_GRACE_DAYS = env.int("LICENSE_GRACE_DAYS", default=14)
_dev_pub = VAR_DIR / "license-signing.pub"
LICENSE_PUBLIC_KEY = env.str("LICENSE_PUBLIC_KEY", default=_dev_pub.read_text().strip() if _dev_pub.exists() else "")

# --- Outbound connections (canary health probes, Git hosts): common.net.resolve_outbound ------------
# Refused networks (CIDR) and host names. Link-local is where cloud metadata lives; loopback is refused
# in production only (the simulated fleet and the tests' servers live there).
_OUTBOUND_DENY = ["169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "fd00:ec2::254/128", "100.100.100.200/32"]
_OUTBOUND_DENY += [
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
]
OUTBOUND_DENY_NETWORKS = env.list(
    "OUTBOUND_DENY_NETWORKS", default=_OUTBOUND_DENY + ([] if DEBUG else ["127.0.0.0/8", "::1/128"])
)

# --- Email ----------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="governance@localhost")

# --- Logging --------------------------------------------------------------------------------
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "common.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # axes: every failed sign-in is a warning (who, from where); its INFO lines are internals.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

# --- Pages other apps add to fleet's pages ---------------------------------------------------
# Fleet never imports the apps built on it. Its dashboard and server detail page load these URL
# names with htmx (server panels get the instance pk as the only argument).
FLEET_DASHBOARD_PANELS = ["governance:fleet_compliance_panel"]
SERVER_DETAIL_PANELS = ["governance:server_panel"]

# --- Metrics ----------------------------------------------------------------------------------
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_COLLECTORS = [
    "fleet.metrics.collect",
    "governance.metrics.collect",
    "canary.metrics.collect",
    "gitops.metrics.collect",
    "common.liveness.collect",
]

# --- Sign-in lockout (django-axes; docs/operations.md) ---------------------------------------
# LOGIN_MAX_FAILURES wrong passwords for one username from one client address lock that pair out for
# LOGIN_LOCKOUT_SECONDS; LOGIN_MAX_FAILURES_PER_USERNAME from any addresses lock the username. Failures
# while locked out are not counted, so one address adds at most LOGIN_MAX_FAILURES per period.
LOGIN_MAX_FAILURES = env.int("LOGIN_MAX_FAILURES", default=5)
LOGIN_MAX_FAILURES_PER_USERNAME = env.int("LOGIN_MAX_FAILURES_PER_USERNAME", default=20)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=300)
# The client address is read from X-Forwarded-For only when the immediate peer is one of these networks.
TRUSTED_PROXIES = [str(ipaddress.ip_network(net, strict=False)) for net in env.list("TRUSTED_PROXIES", default=[])]
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_HANDLER = "common.auth.LockoutHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "username"]  # the order LockoutHandler reads
AXES_FAILURE_LIMIT = "common.auth.failure_limit"  # LOGIN_MAX_FAILURES, read when used
AXES_COOLOFF_TIME = "common.auth.cool_off"  # LOGIN_LOCKOUT_SECONDS
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "common.auth.client_address"
AXES_LOCKOUT_CALLABLE = "common.auth.lockout_response"
AXES_ENABLE_ADMIN = False  # common.admin registers the attempts with an audited unlock action
AXES_VERBOSE = False
AXES_DISABLE_ACCESS_LOG = True  # no row per successful sign-in: only failures are kept, and they expire

# --- Links in e-mails -------------------------------------------------------------------------
# Where users reach the panel (https://panel.example.com): notification e-mails carry absolute links.
PANEL_URL = env.str("PANEL_URL", default="http://127.0.0.1:8000" if DEBUG else "").rstrip("/")

# Shared by all web workers in production (login throttling, API throttles): set CACHE_URL=redis://...
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
