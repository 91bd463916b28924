"""Workers start warm: the URLconf is loaded before the pool forks, not in the first task that links."""

from celery.signals import worker_init
from django.urls import clear_url_caches, get_resolver

from config import celery


def test_worker_start_loads_the_urlconf():
    assert any(receiver() is celery._warm_up_worker for _key, receiver in worker_init.receivers)
    clear_url_caches()
    assert not get_resolver()._populated
    celery.warm_up()
    assert get_resolver()._populated
