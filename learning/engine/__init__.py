"""The MetaKB learning engine: plain PyTorch, no Django, Celery or Channels.

Everything here runs the same in a Celery worker, a management command, a CLI or a
notebook. The Django side hands it plain data (arrays, config dicts) and three
callables (``on_progress``, ``should_stop``, a checkpoint store) and gets plain
results back.
"""
