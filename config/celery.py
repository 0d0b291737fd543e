import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from config.logs import celery_logging_json

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("modelgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# MODELGATE_LOG_FORMAT=json: the worker's and beat's handlers log JSON too (config/logs.py).
after_setup_logger.connect(celery_logging_json)
after_setup_task_logger.connect(celery_logging_json)
