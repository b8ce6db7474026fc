"""The WSGI entry point gunicorn serves (`gunicorn drunc_ui.wsgi`)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "drunc_ui.settings._production")
application = get_wsgi_application()
