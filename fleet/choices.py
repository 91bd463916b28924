from django.db import models


class InstanceStatus(models.TextChoices):
    PENDING = "pending", "Pending first heartbeat"
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"


class ScopeKind(models.TextChoices):
    ALL = "all", "All instances"
    GROUPS = "groups", "Groups"
    TAGS = "tags", "Tag filter"
    INSTANCES = "instances", "Specific instances"


class CommandType(models.TextChoices):
    INSTALL_APP = "install_app", "Install app"
    UNINSTALL_APP = "uninstall_app", "Uninstall app"
    UPDATE_APP = "update_app", "Update app"
    START_APP = "start_app", "Start app"
    STOP_APP = "stop_app", "Stop app"
    RESTART_APP = "restart_app", "Restart app"
    UPDATE_OS = "update_os", "Update OS"
    SET_CONFIG = "set_config", "Set configuration"


class CommandSource(models.TextChoices):
    MANUAL = "manual", "Manual"
    CANARY = "canary", "Canary deployment"
    ROLLBACK = "rollback", "Rollback"
    GITOPS = "gitops", "GitOps sync"
    REMEDIATION = "remediation", "Policy remediation"


class RunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


FINISHED_RUN_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED)


class LicenseState(models.TextChoices):
    NONE = "none", "No license"
    VALID = "valid", "Valid"
    GRACE = "grace", "Expired, in grace period"
    EXPIRED = "expired", "Expired"
    INVALID = "invalid", "Invalid"
