"""GET / (plain text: version, instance, settings module, TLS seen by Django, database, applied
migrations) and GET /healthz (200 only when the database answers and is migrated)."""
import os

from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.urls import path


def database():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM django_migrations")
            return "ok", cursor.fetchone()[0]
    except Exception as error:  # the page says why, never fails
        return "error: %s" % type(error).__name__, 0


def index(request):
    db, migrations = database()
    lines = [
        "version=%s" % os.environ.get("APP_VERSION", "unknown"),
        "instance=%s" % os.environ.get("INSTANCE", "unknown"),
        "settings=%s" % os.environ.get("DJANGO_SETTINGS_MODULE"),
        "secure=%s" % request.is_secure(),
        "debug=%s" % settings.DEBUG,
        "db=%s" % db,
        "migrations=%d" % migrations,
    ]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain")


def healthz(request):
    db, migrations = database()
    ok = db == "ok" and migrations > 0
    return HttpResponse("db=%s migrations=%d\n" % (db, migrations), status=200 if ok else 503, content_type="text/plain")


urlpatterns = [path("", index), path("healthz", healthz)]
