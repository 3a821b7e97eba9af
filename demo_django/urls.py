"""Routes of the customers service."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("customers/whoami", views.whoami, name="whoami"),
    path("metrics", views.prometheus_metrics, name="metrics"),
    path("customers/<str:customer_id>", views.customer, name="customer"),
]
