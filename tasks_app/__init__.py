"""Jobs: launching meta-training, transfer and evaluation work on Celery workers."""
